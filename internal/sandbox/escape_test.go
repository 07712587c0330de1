package sandbox

import (
	"bytes"
	"testing"
)

func TestEscaper(t *testing.T) {
	ctrlPQ := []byte{16, 17}
	cases := []struct {
		name     string
		keys     []byte
		chunks   []string
		want     string
		detached bool
	}{
		{"no keys", nil, []string{"ls\x10\x11\n"}, "ls\x10\x11\n", false},
		{"plain input", ctrlPQ, []string{"echo hi\n"}, "echo hi\n", false},
		{"keys in one read", ctrlPQ, []string{"\x10\x11"}, "", true},
		{"keys after input", ctrlPQ, []string{"ab\x10\x11cd"}, "ab", true},
		{"keys across reads", ctrlPQ, []string{"a\x10", "\x11"}, "a", true},
		{"a held byte is passed on when broken off", ctrlPQ, []string{"\x10", "x"}, "\x10x", false},
		{"ctrl-p twice then ctrl-q", ctrlPQ, []string{"\x10\x10\x11"}, "\x10", true},
		{"ctrl-p alone at the end is held", ctrlPQ, []string{"a\x10"}, "a", false},
		{"one key", []byte{'z'}, []string{"xyz"}, "xy", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &escaper{keys: c.keys}
			var got []byte
			detached := false
			for _, ch := range c.chunks {
				out, d := e.feed([]byte(ch))
				got = append(got, out...)
				if d {
					detached = true
					break
				}
			}
			if !bytes.Equal(got, []byte(c.want)) || detached != c.detached {
				t.Errorf("feed(%q) = %q, detached %v; want %q, %v", c.chunks, got, detached, c.want, c.detached)
			}
		})
	}
}
