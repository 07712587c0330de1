package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// credential is who an exec -u process runs as.
type credential struct {
	uid, gid uint32
	groups   []uint32 // supplementary, the primary one included
	home     string
}

// userDB is the sandbox's user and group database (os/user reads the
// sandbox's /etc/passwd and /etc/group; tests give a table).
type userDB interface {
	Lookup(name string) (*user.User, error)
	LookupId(uid string) (*user.User, error)
	LookupGroup(name string) (*user.Group, error)
	GroupIds(u *user.User) ([]string, error)
}

// errNoUser is an unknown -u name; the message is Docker's.
var errNoUser = errors.New("no matching entries")

// resolveUser reads exec -u's USER[:GROUP] as Docker does: a name must be
// in /etc/passwd, a number need not be (then its group is 0 and its home
// /); a named group must be in /etc/group. Without a group, the user's
// primary group and those /etc/group lists it in; with one, that group
// only.
func resolveUser(spec string, db userDB) (credential, error) {
	name, group, hasGroup := strings.Cut(spec, ":")
	if name == "" || hasGroup && group == "" {
		return credential{}, fmt.Errorf("invalid user %q: want USER[:GROUP], a name or a number each", spec)
	}
	c := credential{home: "/"}
	var u *user.User
	if id, err := parseID(name); err == nil {
		c.uid = id
		u, _ = db.LookupId(name) // a number of nobody in /etc/passwd is fine
	} else {
		if u, err = db.Lookup(name); err != nil {
			return credential{}, fmt.Errorf("unable to find user %s: %w in passwd file", name, errNoUser)
		}
	}
	if u != nil {
		uid, err1 := parseID(u.Uid)
		gid, err2 := parseID(u.Gid)
		if err1 != nil || err2 != nil {
			return credential{}, fmt.Errorf("user %s: its passwd entry has ids %q:%q", name, u.Uid, u.Gid)
		}
		c.uid, c.gid = uid, gid
		if u.HomeDir != "" {
			c.home = u.HomeDir
		}
	}
	switch {
	case hasGroup:
		gid, err := parseID(group)
		if err != nil {
			g, lerr := db.LookupGroup(group)
			if lerr != nil {
				return credential{}, fmt.Errorf("unable to find group %s: %w in group file", group, errNoUser)
			}
			if gid, err = parseID(g.Gid); err != nil {
				return credential{}, fmt.Errorf("group %s: its entry has id %q", group, g.Gid)
			}
		}
		c.gid, c.groups = gid, []uint32{gid}
	case u != nil:
		c.groups = []uint32{c.gid}
		ids, _ := db.GroupIds(u) // none listed: the primary one only
		for _, s := range ids {
			if id, err := parseID(s); err == nil && id != c.gid {
				c.groups = append(c.groups, id)
			}
		}
	default:
		c.groups = []uint32{0}
	}
	return c, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// idRange is a line of /proc/self/uid_map or gid_map: ids inside from
// first, count of them.
type idRange struct{ first, count uint32 }

// parseIDMap reads a uid_map or gid_map.
func parseIDMap(data []byte) []idRange {
	var out []idRange
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		first, err1 := parseID(f[0])
		count, err2 := parseID(f[2])
		if err1 == nil && err2 == nil {
			out = append(out, idRange{first, count})
		}
	}
	return out
}

func mapped(ranges []idRange, id uint32) bool {
	for _, r := range ranges {
		if id >= r.first && uint64(id) < uint64(r.first)+uint64(r.count) {
			return true
		}
	}
	return false
}

// describeMap says what a map holds, for an error: "0 only", "0-65536".
func describeMap(ranges []idRange) string {
	var parts []string
	for _, r := range ranges {
		if r.count == 1 {
			parts = append(parts, strconv.FormatUint(uint64(r.first), 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r.first, uint64(r.first)+uint64(r.count)-1))
		}
	}
	if len(parts) == 1 && !strings.Contains(parts[0], "-") {
		return parts[0] + " only"
	}
	return strings.Join(parts, ", ")
}

// checkMapped says which of c's ids the sandbox's user namespace cannot
// take, with what to do.
func checkMapped(c credential, uidMap, gidMap []idRange) error {
	advice := "start the sandbox with --userns=auto to map a subordinate id range (/etc/subuid, /etc/subgid)"
	if !mapped(uidMap, c.uid) {
		return fmt.Errorf("uid %d is not mapped in the sandbox (it maps %s): %s", c.uid, describeMap(uidMap), advice)
	}
	for _, g := range append([]uint32{c.gid}, c.groups...) {
		if !mapped(gidMap, g) {
			return fmt.Errorf("gid %d is not mapped in the sandbox (it maps %s): %s", g, describeMap(gidMap), advice)
		}
	}
	return nil
}

// osUsers is the sandbox's own database, through os/user.
type osUsers struct{}

func (osUsers) Lookup(name string) (*user.User, error)       { return user.Lookup(name) }
func (osUsers) LookupId(uid string) (*user.User, error)      { return user.LookupId(uid) }
func (osUsers) LookupGroup(name string) (*user.Group, error) { return user.LookupGroup(name) }
func (osUsers) GroupIds(u *user.User) ([]string, error)      { return u.GroupIds() }
