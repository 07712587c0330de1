package sandbox

import (
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	data := []byte("alice:100000:65536\n# comment\nbob:165536:65536\n1001:300000:1000\nbroken:line\ncarol:x:10\n")
	cases := []struct {
		name string
		uid  int
		want idRange
		ok   bool
	}{
		{"alice", 1000, idRange{100000, 65536}, true},
		{"bob", 1002, idRange{165536, 65536}, true},
		{"nobody-by-name", 1001, idRange{300000, 1000}, true},
		{"carol", 1003, idRange{}, false},
		{"dave", 1004, idRange{}, false},
	}
	for _, c := range cases {
		got, ok := parseSubIDs(data, c.name, c.uid)
		if ok != c.ok || got != c.want {
			t.Errorf("parseSubIDs(%s, %d) = %v, %v; want %v, %v", c.name, c.uid, got, ok, c.want, c.ok)
		}
	}
}

func TestUserName(t *testing.T) {
	if got := userName(0); got != "root" {
		t.Errorf("userName(0) = %q, want root", got)
	}
	// No such user, in /etc/passwd or through NSS: the uid itself.
	if got := userName(3999999999); got != "3999999999" {
		t.Errorf("userName(3999999999) = %q, want the uid", got)
	}
}
