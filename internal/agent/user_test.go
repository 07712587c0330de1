package agent

import (
	"errors"
	"os/user"
	"reflect"
	"strings"
	"testing"
)

// tableDB is a passwd and group file as a table.
type tableDB struct {
	users  []user.User
	groups []user.Group
	member map[string][]string // user name -> gids /etc/group lists it in
}

func (db tableDB) Lookup(name string) (*user.User, error) {
	for _, u := range db.users {
		if u.Username == name {
			return &u, nil
		}
	}
	return nil, user.UnknownUserError(name)
}

func (db tableDB) LookupId(uid string) (*user.User, error) {
	for _, u := range db.users {
		if u.Uid == uid {
			return &u, nil
		}
	}
	return nil, errors.New("unknown uid")
}

func (db tableDB) LookupGroup(name string) (*user.Group, error) {
	for _, g := range db.groups {
		if g.Name == name {
			return &g, nil
		}
	}
	return nil, user.UnknownGroupError(name)
}

func (db tableDB) GroupIds(u *user.User) ([]string, error) {
	return append([]string{u.Gid}, db.member[u.Username]...), nil
}

func TestResolveUser(t *testing.T) {
	db := tableDB{
		users: []user.User{
			{Uid: "0", Gid: "0", Username: "root", HomeDir: "/root"},
			{Uid: "1", Gid: "1", Username: "daemon", HomeDir: "/usr/sbin"},
			{Uid: "65534", Gid: "65534", Username: "nobody", HomeDir: "/nonexistent"},
		},
		groups: []user.Group{{Gid: "0", Name: "root"}, {Gid: "1", Name: "daemon"}, {Gid: "50", Name: "staff"}},
		member: map[string][]string{"daemon": {"50"}},
	}
	// What Docker's exec -u gives for each, against the same files.
	for _, c := range []struct {
		spec string
		want credential
	}{
		{"root", credential{0, 0, []uint32{0}, "/root"}},
		{"nobody", credential{65534, 65534, []uint32{65534}, "/nonexistent"}},
		{"daemon", credential{1, 1, []uint32{1, 50}, "/usr/sbin"}},
		{"1", credential{1, 1, []uint32{1, 50}, "/usr/sbin"}},
		{"1234", credential{1234, 0, []uint32{0}, "/"}},
		{"1234:50", credential{1234, 50, []uint32{50}, "/"}},
		{"daemon:staff", credential{1, 50, []uint32{50}, "/usr/sbin"}},
		{"nobody:7", credential{65534, 7, []uint32{7}, "/nonexistent"}},
	} {
		got, err := resolveUser(c.spec, db)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("resolveUser(%q) = %+v, %v; want %+v", c.spec, got, err, c.want)
		}
	}
	for spec, want := range map[string]string{
		"nosuch":        "unable to find user nosuch: no matching entries in passwd file",
		"daemon:nosuch": "unable to find group nosuch: no matching entries in group file",
		"":              "invalid user",
		"daemon:":       "invalid user",
		"99999999999":   "unable to find user 99999999999",
	} {
		if _, err := resolveUser(spec, db); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resolveUser(%q): %v; want an error with %q", spec, err, want)
		}
	}
}

func TestCheckMapped(t *testing.T) {
	rootOnly := parseIDMap([]byte("         0       1001          1\n"))
	auto := parseIDMap([]byte("0 1001 1\n1 100000 65536\n"))
	if err := checkMapped(credential{uid: 0, gid: 0, groups: []uint32{0}}, rootOnly, rootOnly); err != nil {
		t.Errorf("root in a root-only sandbox: %v", err)
	}
	err := checkMapped(credential{uid: 65534, gid: 65534, groups: []uint32{65534}}, rootOnly, rootOnly)
	if err == nil || !strings.Contains(err.Error(), "uid 65534 is not mapped in the sandbox (it maps 0 only)") || !strings.Contains(err.Error(), "--userns=auto") {
		t.Errorf("nobody in a root-only sandbox: %v; want the uid named and --userns=auto advised", err)
	}
	if err := checkMapped(credential{uid: 65534, gid: 65534, groups: []uint32{65534}}, auto, auto); err != nil {
		t.Errorf("nobody with --userns=auto: %v", err)
	}
	err = checkMapped(credential{uid: 1, gid: 1, groups: []uint32{1, 70000}}, auto, auto)
	if err == nil || !strings.Contains(err.Error(), "gid 70000 is not mapped in the sandbox (it maps 0, 1-65536)") {
		t.Errorf("a group beyond the range: %v", err)
	}
}
