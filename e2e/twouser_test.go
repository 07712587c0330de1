package e2e

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netns-run/netns-run/e2e/internal/intruder"
)

// TestOtherUserIsRefused: another unprivileged uid (the launcher's
// intruder) that can reach this user's exec, control and daemon sockets
// (their directories opened up for the test) gets no service from them: each
// closes the connection without a reply. The owner, sending the same bytes
// to the same socket before and after, gets an answer, so that a closed
// connection means a refusal and not a dead or deaf server.
func TestOtherUserIsRefused(t *testing.T) {
	requireLauncher(t)
	if intruderSock == "" {
		t.Skip("no second user (NETNS_RUN_E2E_INTRUDER_SOCK is unset): the launcher runs the intruder only as root, with -intruder NAME")
	}
	u := newUser(t)
	shared := strings.TrimSpace(u.ok("run", "-d", "--name", "shared", "--network", "bridge", "--", probe, "sleep", "60s").stdout)
	alone := strings.TrimSpace(u.ok("run", "-d", "--name", "alone", "--network", "private", "--", probe, "sleep", "60s").stdout)

	// Payloads that each server answers, for its owner, with an error
	// reply: any reply shows that it served the request.
	rt := filepath.Join(u.rt, "netns-run")
	sockets := []struct {
		name    string
		path    string
		payload string
	}{
		{"exec socket, bridge sandbox", filepath.Join(rt, "sandboxes", shared+".sock"), `{}`},
		{"control socket, bridge sandbox", filepath.Join(rt, "sandboxes", shared+".ctl"), `{}`},
		{"exec socket, private sandbox", filepath.Join(rt, "sandboxes", alone+".sock"), `{}`},
		{"control socket, private sandbox", filepath.Join(rt, "sandboxes", alone+".ctl"), `{}`},
		// An empty hello gets no reply: a one-shot request about a
		// sandbox the daemon does not serve gets an error.
		{"daemon socket", filepath.Join(rt, "members.sock"), `{"request":{"sandbox_id":"no-such-sandbox"}}`},
	}
	var paths []string
	for _, s := range sockets {
		waitSocket(t, s.path, rt)
		paths = append(paths, s.path)
	}

	// The runtime directory must stay 0700 for netns-run itself: open it
	// up only while the probes run (and close it again if one fails).
	restore := openUp(t, paths)
	t.Cleanup(restore)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range sockets {
		t.Run(s.name, func(t *testing.T) {
			try := func(when string) {
				t.Helper()
				own := intruder.Try(s.path, []byte(s.payload), 5*time.Second)
				if own.Outcome != intruder.Replied {
					t.Fatalf("the owner, %s the intruder: %v; want a reply (without one, a refusal shows nothing)", when, own)
				}
			}
			try("before")
			got, err := intruder.Ask(ctx, intruderSock, intruder.Request{Path: s.path, Payload: []byte(s.payload)})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case got.UID == 0 || got.UID == os.Getuid():
				t.Fatalf("the intruder runs as uid %d: want a second unprivileged uid (we are %d)", got.UID, os.Getuid())
			case got.Outcome == intruder.ConnectFailed:
				t.Fatalf("the intruder could not connect, so this shows nothing: %v", got)
			case got.Outcome != intruder.Closed:
				t.Errorf("another user's connection: %v; want it closed without a reply", got)
			}
			try("after")
		})
	}
	restore()
}

// waitSocket waits for a unix socket at path; a sandbox's sockets come
// once its command runs.
func waitSocket(t *testing.T, path, listDir string) {
	t.Helper()
	for deadline := time.Now().Add(lineTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err := os.Lstat(path); err == nil && st.Mode().Type() == fs.ModeSocket {
			return
		}
	}
	files, err := listTree(listDir)
	t.Fatalf("no socket %s after %v; %s holds %v (%v)", path, lineTimeout, listDir, files, err)
}

// openUp lets other users reach the sockets at paths, all under TMPDIR:
// o+x on every directory between TMPDIR and them, mode 0666 on the sockets.
// The returned function puts the old modes back; it may be called again.
func openUp(t *testing.T, paths []string) func() {
	t.Helper()
	top := filepath.Clean(os.TempDir())
	type change struct {
		path string
		mode fs.FileMode
	}
	var changes []change
	restore := func() {
		for i := len(changes) - 1; i >= 0; i-- {
			c := changes[i]
			if err := os.Chmod(c.path, c.mode); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("restoring the mode of %s: %v", c.path, err)
			}
		}
		changes = nil
	}
	chmod := func(p string, mode func(fs.FileMode) fs.FileMode) {
		st, err := os.Stat(p)
		if err != nil {
			restore()
			t.Fatal(err)
		}
		old := st.Mode().Perm()
		if mode(old) == old {
			return
		}
		if err := os.Chmod(p, mode(old)); err != nil {
			restore()
			t.Fatal(err)
		}
		changes = append(changes, change{p, old})
	}
	dirs := map[string]bool{}
	for _, p := range paths {
		rel, err := filepath.Rel(top, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			restore()
			t.Fatalf("%s is not under TMPDIR (%s): the test opens up only its own directories", p, top)
		}
		for d := filepath.Dir(p); ; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				chmod(d, func(m fs.FileMode) fs.FileMode { return m | 0o001 })
			}
			if d == top {
				break
			}
		}
		chmod(p, func(fs.FileMode) fs.FileMode { return 0o666 })
	}
	return restore
}

// TestOtherUserCannotUseSandboxes: another unprivileged uid, even with
// the way into this user's runtime directory opened up, cannot list,
// inspect, exec into, stop or publish through this user's sandboxes with
// netns-run, and cannot take a port one of them published; the sandbox
// runs on, its port still served.
func TestOtherUserCannotUseSandboxes(t *testing.T) {
	requireLauncher(t)
	if intruderSock == "" {
		t.Skip("no second user (NETNS_RUN_E2E_INTRUDER_SOCK is unset): the launcher runs the intruder only as root, with -intruder NAME")
	}
	u := newUser(t)
	id := strings.TrimSpace(u.ok("run", "-d", "--name", "owned", "--network", "bridge", "-p", "18610:80", "--", probe, "serve-tcp", "80").stdout)
	waitTCP(t, "127.0.0.1:18610")
	sock := filepath.Join(u.rt, "netns-run", "sandboxes", id+".sock")
	waitSocket(t, sock, u.rt)
	restore := openUp(t, []string{sock})
	t.Cleanup(restore)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ask := func(req intruder.Request) intruder.Result {
		t.Helper()
		got, err := intruder.Ask(ctx, intruderSock, req)
		if err != nil {
			t.Fatal(err)
		}
		if got.UID == 0 || got.UID == os.Getuid() {
			t.Fatalf("the intruder runs as uid %d: want a second unprivileged uid (we are %d)", got.UID, os.Getuid())
		}
		return got
	}
	for _, addr := range []string{":18610", "127.0.0.1:18610"} {
		if got := ask(intruder.Request{Listen: addr}); got.Outcome != intruder.ListenFailed {
			t.Errorf("another user listening on the published %s: %v; want it refused", addr, got)
		}
	}
	env := u.env[1:] // the owner's data and runtime directories (not its HOME)
	for _, args := range [][]string{
		{"ps", "-a"}, {"inspect", "owned"}, {"exec", "owned", "--", probe, "exit", "0"},
		{"stop", "owned"}, {"port", "add", "owned", "18611:80"}, {"logs", "owned"}, {"attach", "owned"},
	} {
		got := ask(intruder.Request{Run: append([]string{netnsRun}, args...), Env: env})
		if got.Outcome != intruder.Exited || got.Status == 0 || strings.Contains(string(got.Reply), id[:12]) {
			t.Errorf("another user's netns-run %s: %v; want a refusal that shows nothing of the sandbox", strings.Join(args, " "), got)
		} else {
			t.Logf("another user's netns-run %s: status %d: %s", strings.Join(args, " "), got.Status, strings.TrimSpace(string(got.Reply)))
		}
	}
	restore()
	if got := u.ok("ps", "--format", "{{.Names}} {{.Status}}").stdout; !strings.HasPrefix(got, "owned Up") {
		t.Errorf("the owner's sandbox after the other user's tries: %q; want it up", got)
	}
	waitTCP(t, "127.0.0.1:18610")
	if r := u.nr("port", "owned"); strings.Contains(r.stdout, "18611") {
		t.Errorf("the other user's port add took effect:\n%s", r)
	}
}
