package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadOnlyDataDir: a data directory netns-run may not write (a
// read-only mount, a full disk) refuses a change in one line that says
// what to do, and leaves the store as it was: reading it still works, and
// the change goes through once the directory is writable again.
func TestReadOnlyDataDir(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", "10.91.0.0/24", "kept")
	t.Cleanup(func() { u.nr("network", "rm", "kept", "later") })
	var data string
	for _, e := range u.env {
		if v, ok := strings.CutPrefix(e, "XDG_DATA_HOME="); ok {
			data = filepath.Join(v, "netns-run")
		}
	}
	before := u.ok("network", "ls", "--format", "{{.Name}} {{.ID}}").stdout
	if err := os.Chmod(data, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(data, 0o700) })
	wantOwnError(t, u.nr("network", "create", "--subnet", "10.92.0.0/24", "later"), "network create in a read-only data directory",
		data, "make the directory writable", "nothing was changed")
	if got := u.ok("network", "ls", "--format", "{{.Name}} {{.ID}}").stdout; got != before {
		t.Errorf("network ls after the refused create:\n%s\nwant as before:\n%s", got, before)
	}
	if err := os.Chmod(data, 0o700); err != nil {
		t.Fatal(err)
	}
	u.ok("network", "create", "--subnet", "10.92.0.0/24", "later")
}
