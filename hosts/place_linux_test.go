package hosts

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// placeChildEnv marks the re-executed test binary that runs Place inside a
// fresh user+mount namespace; its value is the test's scratch directory.
const placeChildEnv = "NETNS_RUN_HOSTS_PLACE_CHILD"

// placeSkipMarker is printed by the child when the namespace exists but
// mounting is refused (e.g. AppArmor's restriction of unprivileged user
// namespaces), so the parent can skip rather than fail.
const placeSkipMarker = "place-test-skip:"

const placedHosts = "10.0.2.100\tplaced-by-test\n"

// placeFixture lays out, in dir, the targets the child places over.
type placeFixture struct {
	dangling string // symlink to a path that does not exist
	linkDest string // where it points
	missing  string // does not exist
	dir      string // a directory, not a file
}

func newPlaceFixture(dir string) placeFixture {
	return placeFixture{
		dangling: filepath.Join(dir, "resolv.conf"),
		linkDest: filepath.Join(dir, "run", "stub-resolv.conf"),
		missing:  filepath.Join(dir, "missing"),
		dir:      filepath.Join(dir, "adir"),
	}
}

func TestPlace(t *testing.T) {
	if dir := os.Getenv(placeChildEnv); dir != "" {
		placeChild(t, newPlaceFixture(dir))
		return
	}

	dir := t.TempDir()
	fx := newPlaceFixture(dir)
	if err := os.Symlink(fx.linkDest, fx.dangling); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(fx.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hostsBefore, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestPlace$", "-test.v")
	cmd.Env = append(os.Environ(), placeChildEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot create a user+mount namespace: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child in user+mount namespace: %v\n%s", err, out.String())
	}
	if reason := skipReason(out.Bytes()); reason != "" {
		t.Skip(reason)
	}
	t.Logf("child output:\n%s", out.String())

	hostsAfter, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hostsBefore, hostsAfter) {
		t.Errorf("the real /etc/hosts changed:\nbefore:\n%s\nafter:\n%s", hostsBefore, hostsAfter)
	}
	if dest, err := os.Readlink(fx.dangling); err != nil || dest != fx.linkDest {
		t.Errorf("the dangling symlink changed: Readlink = %q, %v", dest, err)
	}
	for _, p := range []string{fx.linkDest, filepath.Dir(fx.linkDest), fx.missing} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was created on the host (Lstat: %v)", p, err)
		}
	}
}

func skipReason(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, placeSkipMarker) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// placeChild runs inside the new namespaces.
func placeChild(t *testing.T, fx placeFixture) {
	// Probe what Place needs first, so a refusal is a skip, not a failure.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Log(placeSkipMarker, "mounting is not allowed in the new namespace:", err)
		t.Skip()
	}
	scratchMountsBefore := mountsAt(t, scratchDir)

	err := Place(map[string][]byte{
		"/etc/hosts":    []byte(placedHosts),
		fx.dangling:     []byte("nameserver 10.0.2.3\n"),
		fx.missing:      []byte("never placed\n"),
		fx.dir:          []byte("never placed\n"),
		"/etc/hostname": []byte("placed-by-test\n"),
	})

	// Exactly the missing target and the directory are skipped, and only
	// skips are reported.
	var skipped []string
	for _, e := range unjoin(err) {
		var skip *SkipError
		if !errors.As(e, &skip) {
			t.Fatalf("Place returned a non-skip error: %v", e)
		}
		skipped = append(skipped, skip.Target)
	}
	if want := []string{fx.dir, fx.missing}; strings.Join(skipped, " ") != strings.Join(want, " ") {
		t.Errorf("skipped %q, want %q (error: %v)", skipped, want, err)
	}
	if err != nil && !strings.Contains(err.Error(), fx.missing) {
		t.Errorf("error %q does not name %s", err, fx.missing)
	}

	for path, want := range map[string]string{
		"/etc/hosts":    placedHosts,
		fx.dangling:     "nameserver 10.0.2.3\n",
		"/etc/hostname": "placed-by-test\n",
	} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("inside, %s = %q, %v; want %q", path, got, err, want)
		}
	}
	if fi, err := os.Stat("/etc/hosts"); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("inside, /etc/hosts mode = %v, %v; want 0644", fi.Mode(), err)
	}
	// The scratch tmpfs is gone (detached) while the bind mounts keep its files.
	if after := mountsAt(t, scratchDir); after != scratchMountsBefore {
		t.Errorf("%d mounts on %s after Place, %d before", after, scratchDir, scratchMountsBefore)
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// mountsAt counts the mounts whose mount point is path.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(data)) {
		if fields := strings.Fields(line); len(fields) > 4 && fields[4] == path {
			n++
		}
	}
	return n
}
