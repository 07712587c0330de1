package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// idRange is one line of /etc/subuid or /etc/subgid.
type idRange struct{ start, count int }

// idMapping maps the caller to root and a subordinate range above it, as
// rootless Podman does: 0 -> caller, 1..count -> start..start+count-1.
type idMapping struct {
	uid, gid       int
	subuid, subgid idRange
	newuidmap      string
	newgidmap      string
}

func subordinateMapping() (*idMapping, error) {
	newuidmap, err := exec.LookPath("newuidmap")
	if err != nil {
		return nil, fmt.Errorf("--userns=auto needs newuidmap and newgidmap in PATH: install the uidmap package (apt install uidmap, dnf install shadow-utils)")
	}
	newgidmap, err := exec.LookPath("newgidmap")
	if err != nil {
		return nil, fmt.Errorf("--userns=auto needs newgidmap in PATH: install the uidmap package (apt install uidmap, dnf install shadow-utils)")
	}
	uid, gid := os.Getuid(), os.Getgid()
	name := userName(uid)
	subuid, err := findRange("/etc/subuid", name, uid)
	if err != nil {
		return nil, err
	}
	subgid, err := findRange("/etc/subgid", name, uid)
	if err != nil {
		return nil, err
	}
	return &idMapping{uid: uid, gid: gid, subuid: subuid, subgid: subgid, newuidmap: newuidmap, newgidmap: newgidmap}, nil
}

// userName is uid's login name, or uid in decimal when it has none. The
// binary is static (no libc), so os/user reads /etc/passwd only; a user of
// a directory (LDAP, SSSD) is found through NSS by getent.
func userName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	out, err := exec.Command("getent", "passwd", id).Output()
	if name, _, ok := strings.Cut(string(out), ":"); err == nil && ok && name != "" {
		return name
	}
	return id
}

func findRange(path, name string, uid int) (idRange, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return idRange{}, fmt.Errorf("--userns=auto needs a range for %s in %s: %w", name, path, err)
	}
	if r, ok := parseSubIDs(data, name, uid); ok {
		return r, nil
	}
	return idRange{}, fmt.Errorf("--userns=auto: %s has no range for %s; add one, e.g. usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s", path, name, name)
}

// parseSubIDs returns the first range of user name (or numeric uid).
func parseSubIDs(data []byte, name string, uid int) (idRange, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) != 3 || (f[0] != name && f[0] != strconv.Itoa(uid)) {
			continue
		}
		start, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.Atoi(f[2])
		if err1 == nil && err2 == nil && start >= 0 && count > 0 {
			return idRange{start: start, count: count}, true
		}
	}
	return idRange{}, false
}

func (m *idMapping) apply(pid int) error {
	p := strconv.Itoa(pid)
	run := func(bin string, self int, r idRange) error {
		args := []string{p, "0", strconv.Itoa(self), "1", "1", strconv.Itoa(r.start), strconv.Itoa(r.count)}
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := run(m.newuidmap, m.uid, m.subuid); err != nil {
		return err
	}
	return run(m.newgidmap, m.gid, m.subgid)
}
