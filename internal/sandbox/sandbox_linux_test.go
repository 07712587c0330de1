package sandbox

// Integration tests: real sandboxes (user, net, mount, uts and pid
// namespaces, a real TAP or packet link), whose agent is this test binary
// (TestMain). They skip where user namespaces cannot be made. No packet
// leaves a sandbox: the link's descriptor is held and never read or
// written, so eth0 leads nowhere. Run them unprivileged too:
//
//	go test -c -o /tmp/sb.test ./sandbox && su netns-test -s /bin/sh -c 'cd /tmp && /tmp/sb.test -test.v'

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netns-run/netns-run/internal/agent"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if agent.IsChild() {
		agent.Main()
	}
	os.Exit(m.Run())
}

const (
	testHostname = "sbtest-box"
	testHosts    = "127.0.0.1\tlocalhost\n10.0.2.100\tsbtest-box\n198.51.100.9\tdb.sbtest\n"
)

// testSandbox is a started sandbox whose command's stdout and stderr are
// collected.
type testSandbox struct {
	*Sandbox
	t      *testing.T
	stdin  *os.File // the command's stdin, when asked for
	stdout *lineBuffer
}

// lineBuffer collects a stream while tests poll it.
type lineBuffer struct {
	mu   sync.Mutex
	buf  strings.Builder
	done chan struct{}
}

func collect(t *testing.T, r *os.File) *lineBuffer {
	b := &lineBuffer{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		defer r.Close()
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			b.mu.Lock()
			b.buf.Write(buf[:n])
			b.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return b
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the stream contains s.
func (b *lineBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q after 20s; got %q", s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startSandbox starts a sandbox running argv and lets it run. With
// withStdin the command reads a pipe that ts.stdin writes.
func startSandbox(t *testing.T, withStdin bool, argv ...string) *testSandbox {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	spec := wire.Spec{
		Hostname: testHostname,
		Link: &tap.Config{
			Name: "eth0", Mode: tap.ModeAuto, MTU: 1500,
			MAC: "02:42:0a:00:02:64", PeerMAC: "02:42:0a:00:02:02",
			Address: netip.MustParsePrefix("10.0.2.100/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
		},
		Files: map[string][]byte{"/etc/hosts": []byte(testHosts)},
		Argv:  argv,
		Env:   append(os.Environ(), "SBTEST=main-env"),
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outW.Close()
	opts := Options{Stdout: outW, Stderr: os.Stderr}
	ts := &testSandbox{t: t}
	var inR *os.File
	if withStdin {
		inR, ts.stdin, err = os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer inR.Close()
		t.Cleanup(func() { ts.stdin.Close() })
		opts.Stdin = inR
	}
	sb, err := Start(spec, opts)
	if err != nil {
		outR.Close()
		if strings.Contains(err.Error(), "user namespace") {
			t.Skipf("cannot make a sandbox here: %v", err)
		}
		t.Fatalf("Start: %v", err)
	}
	ts.Sandbox = sb
	t.Cleanup(func() {
		sb.Kill()
		unix.Close(sb.Link().FD)
	})
	ts.stdout = collect(t, outR)
	if err := sb.Run(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return ts
}

// procMounted tells whether the sandbox has its own /proc.
func (ts *testSandbox) procMounted() bool {
	for _, w := range ts.Warnings() {
		if strings.Contains(w, "/proc") {
			ts.t.Logf("warning: %s", w)
			return false
		}
	}
	return true
}

// execResult is how an exec ended and what it wrote.
type execResult struct {
	code           int
	err            error
	stdout, stderr string
}

// pipes makes the stdio of an exec: stdin holds input, then ends.
type pipes struct {
	child          [3]*os.File
	stdin          *os.File
	stdout, stderr *lineBuffer
}

func newPipes(t *testing.T, input string) *pipes {
	t.Helper()
	var p pipes
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.child = [3]*os.File{inR, outW, errW}
	p.stdin = inW
	p.stdout, p.stderr = collect(t, outR), collect(t, errR)
	if input != "" {
		go func() {
			io.WriteString(inW, input)
			inW.Close()
		}()
	} else {
		t.Cleanup(func() { inW.Close() })
	}
	return &p
}

// closeChild closes our copies of the process's ends.
func (p *pipes) closeChild() {
	for _, f := range p.child {
		f.Close()
	}
}

// result waits for the output to end (bounded) after the process did.
func (p *pipes) result(t *testing.T, code int, err error) execResult {
	t.Helper()
	p.closeChild()
	for _, b := range []*lineBuffer{p.stdout, p.stderr} {
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the exec's output did not end 10s after it exited")
		}
	}
	return execResult{code: code, err: err, stdout: p.stdout.String(), stderr: p.stderr.String()}
}

func (ts *testSandbox) exec(req ExecRequest, input string) execResult {
	ts.t.Helper()
	p := newPipes(ts.t, input)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, err := ts.Exec(ctx, req, p.child)
	return p.result(ts.t, code, err)
}

func sh(script string) ExecRequest {
	return ExecRequest{Argv: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}}
}

// viewScript prints what must look the same from the command and an exec.
const viewScript = `cat /proc/sys/kernel/hostname; cat /etc/hosts; for n in user net mnt uts pid; do readlink /proc/self/ns/$n; done`

// nsPID is the inode of the sandbox's pid namespace, as seen from here.
func (ts *testSandbox) nsPID() string {
	ts.t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", ts.Pid()))
	if err != nil {
		ts.t.Fatal(err)
	}
	return l
}

// inNamespace lists the processes (seen from here) in pid namespace ns.
func inNamespace(ns string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return out
}

// wantEmptyNamespace checks that nothing is left in pid namespace ns.
func wantEmptyNamespace(t *testing.T, ns string) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = inNamespace(ns); len(left) == 0 {
			return
		}
	}
	t.Errorf("left in the sandbox's pid namespace: %q", left)
}

func TestExec(t *testing.T) {
	ts := startSandbox(t, false, "/bin/sh", "-c", viewScript+"; echo ready; exec sleep 300")
	ts.stdout.waitFor(t, "ready\n")
	mainView := strings.TrimSuffix(ts.stdout.String(), "ready\n")

	t.Run("same view as the command", func(t *testing.T) {
		r := ts.exec(sh(viewScript), "")
		if r.err != nil || r.code != 0 {
			t.Fatalf("exec: %d, %v; stderr %q", r.code, r.err, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, testHostname+"\n"+testHosts) {
			t.Errorf("the exec sees hostname and hosts %q, want %q first", r.stdout, testHostname+"\n"+testHosts)
		}
		if r.stdout != mainView {
			t.Errorf("the exec sees:\n%s\nthe command saw:\n%s", r.stdout, mainView)
		}
		for _, n := range []string{"user", "net", "mnt", "uts", "pid"} {
			agent, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", ts.Pid(), n))
			if !strings.Contains(r.stdout, agent+"\n") {
				t.Errorf("the exec is not in the agent's %s namespace %s:\n%s", n, agent, r.stdout)
			}
		}
	})

	t.Run("exit status", func(t *testing.T) {
		for script, want := range map[string]int{"exit 0": 0, "exit 42": 42, "kill -TERM $$": 128 + 15, "kill -KILL $$": 128 + 9} {
			if r := ts.exec(sh(script), ""); r.code != want || r.err != nil {
				t.Errorf("exec %q: %d, %v; want %d, nil", script, r.code, r.err, want)
			}
		}
	})

	t.Run("stdio", func(t *testing.T) {
		r := ts.exec(sh(`cat; echo to-stderr >&2`), "hello\nworld\n")
		if r.code != 0 || r.stdout != "hello\nworld\n" || r.stderr != "to-stderr\n" {
			t.Errorf("cat: %d, %v, stdout %q, stderr %q", r.code, r.err, r.stdout, r.stderr)
		}
	})

	t.Run("environment and directory", func(t *testing.T) {
		req := sh(`echo "$FOO"; pwd; echo "${_NETNS_RUN_SANDBOX:-unset}"; echo "${SBTEST:-unset}"`)
		req.Env = append(req.Env, "FOO=bar", wire.AgentEnv+"=agent")
		req.Dir = "/tmp"
		if r := ts.exec(req, ""); r.code != 0 || r.stdout != "bar\n/tmp\nunset\nunset\n" {
			t.Errorf("given env and dir: %d, %v, %q", r.code, r.err, r.stdout)
		}
		req = ExecRequest{Argv: []string{"/bin/sh", "-c", `echo "${SBTEST:-unset}"`}}
		if r := ts.exec(req, ""); r.code != 0 || r.stdout != "main-env\n" {
			t.Errorf("nil env (the command's): %d, %v, %q", r.code, r.err, r.stdout)
		}
		req = sh("pwd")
		req.Dir = "/no/such/dir"
		if r := ts.exec(req, ""); r.code != wire.ExitCannotInvoke || r.err == nil {
			t.Errorf("missing dir: %d, %v; want 126 and an error", r.code, r.err)
		}
	})

	t.Run("one processor for the agent alone", func(t *testing.T) {
		want := os.Getenv("GOMAXPROCS")
		if want == "" {
			want = "unset"
		}
		req := ExecRequest{Argv: []string{"/bin/sh", "-c", `echo "${GOMAXPROCS:-unset}"; tr '\0' '\n' </proc/1/environ | grep '^GOMAXPROCS='`}}
		if r := ts.exec(req, ""); r.code != 0 || r.stdout != want+"\nGOMAXPROCS=1\n" {
			t.Errorf("GOMAXPROCS of the command, then of the agent (pid 1): %d, %v, %q; want %q and GOMAXPROCS=1", r.code, r.err, r.stdout, want)
		}
	})

	t.Run("cannot run", func(t *testing.T) {
		r := ts.exec(ExecRequest{Argv: []string{"no-such-command-sbtest"}, Env: []string{"PATH=/usr/bin:/bin"}}, "")
		var e *Error
		if r.code != wire.ExitNotFound || !errors.As(r.err, &e) || !strings.Contains(e.Msg, "no-such-command-sbtest") {
			t.Errorf("missing command: %d, %v; want 127 and an *Error naming it", r.code, r.err)
		}
		// Looked up in the request's PATH, not the agent's.
		if r := ts.exec(ExecRequest{Argv: []string{"sh", "-c", "true"}, Env: []string{"PATH=/nonexistent"}}, ""); r.code != wire.ExitNotFound {
			t.Errorf("sh with PATH=/nonexistent: %d, %v; want 127", r.code, r.err)
		}
		noexec := filepath.Join(t.TempDir(), "noexec.sh")
		os.WriteFile(noexec, []byte("#!/bin/sh\necho RAN\n"), 0o644)
		os.Chmod(filepath.Dir(noexec), 0o755)
		if r := ts.exec(ExecRequest{Argv: []string{noexec}}, ""); r.code != wire.ExitCannotInvoke || r.err == nil || strings.Contains(r.stdout, "RAN") {
			t.Errorf("not executable: %d, %v, %q; want 126 and an error", r.code, r.err, r.stdout)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var ps [2]*pipes
		var procs [2]*ExecProcess
		for i := range ps {
			ps[i] = newPipes(t, "")
			p, err := ts.StartExec(ctx, sh(`echo started; read x; echo "got $x"; exit 1`+strconv.Itoa(i)), ps[i].child)
			if err != nil {
				t.Fatal(err)
			}
			ps[i].closeChild()
			procs[i] = p
			ps[i].stdout.waitFor(t, "started\n")
		}
		if procs[0].Pid() == procs[1].Pid() || procs[0].Pid() <= 1 {
			t.Errorf("pids %d and %d", procs[0].Pid(), procs[1].Pid())
		}
		// The second ends first: the first does not hold it up.
		for _, i := range []int{1, 0} {
			fmt.Fprintf(ps[i].stdin, "line%d\n", i)
			code, err := procs[i].Wait(ctx)
			r := ps[i].result(t, code, err)
			if r.code != 10+i || r.err != nil || r.stdout != fmt.Sprintf("started\ngot line%d\n", i) {
				t.Errorf("exec %d: %d, %v, %q", i, r.code, r.err, r.stdout)
			}
		}
	})

	t.Run("pid namespace", func(t *testing.T) {
		if !ts.procMounted() {
			t.Skip("the sandbox has no /proc of its own here")
		}
		r := ts.exec(sh(`echo $$; cd /proc && echo [0-9]*; tr '\0' ' ' < /proc/1/cmdline`), "")
		lines := strings.Split(r.stdout, "\n")
		if r.code != 0 || len(lines) < 3 {
			t.Fatalf("exec: %d, %v, %q", r.code, r.err, r.stdout)
		}
		self, pids := lines[0], strings.Fields(lines[1])
		if !slices.Contains(pids, "1") || len(pids) > 4 || !slices.Contains(pids, self) {
			t.Errorf("the processes in /proc of the sandbox are %q (self %s); want 1, the command, this shell (and at most one more)", pids, self)
		}
		if !strings.HasPrefix(lines[2], "netns-run-sandbox") {
			t.Errorf("pid 1 is %q, want the agent", lines[2])
		}
	})

	t.Run("signal", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := newPipes(t, "")
		proc, err := ts.StartExec(ctx, sh(`trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done`), p.child)
		if err != nil {
			t.Fatal(err)
		}
		p.stdout.waitFor(t, "ready\n")
		if err := proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := proc.Wait(ctx)
		if r := p.result(t, code, err); r.code != 7 || r.err != nil || !strings.Contains(r.stdout, "got TERM") {
			t.Errorf("after SIGTERM: %d, %v, %q", r.code, r.err, r.stdout)
		}
	})

	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		p := newPipes(t, "")
		start := time.Now()
		code, err := ts.Exec(ctx, sh("exec sleep 60"), p.child)
		p.result(t, code, err)
		if code != wire.ExitKilled || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
			t.Errorf("exec past its context: %d, %v after %v; want 137, deadline exceeded", code, err, time.Since(start))
		}
	})

	t.Run("the command is untouched", func(t *testing.T) {
		select {
		case <-ts.exited:
			t.Fatal("the sandbox ended")
		default:
		}
	})
}

// TestExecSandboxEnds: when the command ends, the execs die with the
// sandbox and their callers learn it; later execs are refused.
func TestExecSandboxEnds(t *testing.T) {
	ts := startSandbox(t, true, "/bin/sh", "-c", "echo ready; read x; exit 4")
	ts.stdout.waitFor(t, "ready\n")
	ns := ts.nsPID()
	sock := filepath.Join(t.TempDir(), "exec.sock")
	ln, err := ListenExec(sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- ServeExec(context.Background(), ln, ts.Sandbox) }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPipes(t, "")
	proc, err := ts.StartExec(ctx, sh("echo up; exec sleep 300"), p.child)
	if err != nil {
		t.Fatal(err)
	}
	p.stdout.waitFor(t, "up\n")
	via := newPipes(t, "")
	type res struct {
		code int
		err  error
	}
	viaDone := make(chan res, 1)
	go func() {
		code, err := ExecVia(sock, sh("echo up; exec sleep 300"), via.child[0], via.child[1], via.child[2])
		viaDone <- res{code, err}
	}()
	via.stdout.waitFor(t, "up\n")

	io.WriteString(ts.stdin, "x\n")
	code, err := ts.Wait()
	if code != 4 || err != nil {
		t.Errorf("Wait: %d, %v; want 4, nil", code, err)
	}
	if code, err := proc.Wait(ctx); code != wire.ExitKilled || !errors.Is(err, ErrSandboxEnded) {
		t.Errorf("the exec when the command ended: %d, %v; want 137, ErrSandboxEnded", code, err)
	}
	p.result(t, 0, nil)
	select {
	case r := <-viaDone:
		if r.code != wire.ExitKilled || !errors.Is(r.err, ErrSandboxEnded) {
			t.Errorf("ExecVia when the command ended: %d, %v; want 137, ErrSandboxEnded", r.code, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ExecVia still running 10s after the sandbox ended")
	}
	via.result(t, 0, nil)
	wantEmptyNamespace(t, ns)

	if _, err := ts.StartExec(ctx, sh("true"), newPipes(t, "").child); !errors.Is(err, ErrNotRunning) {
		t.Errorf("exec after the end: %v; want ErrNotRunning", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeExec: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeExec still serving 10s after the sandbox ended")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exec socket is still there: %v", err)
	}
}

// TestKill: killing the agent takes the whole sandbox down.
func TestKill(t *testing.T) {
	ts := startSandbox(t, false, "/bin/sh", "-c", "sleep 300 & sleep 301 & echo ready; wait")
	ts.stdout.waitFor(t, "ready\n")
	ns := ts.nsPID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPipes(t, "")
	proc, err := ts.StartExec(ctx, sh("sleep 302 & echo up; wait"), p.child)
	if err != nil {
		t.Fatal(err)
	}
	p.stdout.waitFor(t, "up\n")
	if n := len(inNamespace(ns)); n < 6 {
		t.Errorf("%d processes in the sandbox, want at least 6: %q", n, inNamespace(ns))
	}
	ts.Kill()
	if code, err := proc.Wait(ctx); code != wire.ExitKilled || !errors.Is(err, ErrSandboxEnded) {
		t.Errorf("the exec after Kill: %d, %v; want 137, ErrSandboxEnded", code, err)
	}
	p.result(t, 0, nil)
	if left := inNamespace(ns); len(left) != 0 {
		t.Errorf("Kill returned with processes left in the sandbox: %q", left)
	}
	if code, err := ts.Wait(); code != 128+9 || err != nil {
		t.Errorf("Wait after Kill: %d, %v; want 137, nil", code, err)
	}
}

// TestCommandEnds: the command's status, signals forwarded by pid 1, and
// nothing left behind.
func TestCommandEnds(t *testing.T) {
	t.Run("leftovers are killed", func(t *testing.T) {
		ts := startSandbox(t, false, "/bin/sh", "-c", "sleep 300 & sleep 301 & echo ready; exit 3")
		ts.stdout.waitFor(t, "ready\n")
		ns := ts.nsPID()
		start := time.Now()
		if code, err := ts.Wait(); code != 3 || err != nil {
			t.Errorf("Wait: %d, %v; want 3", code, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Wait took %v", d)
		}
		wantEmptyNamespace(t, ns)
		select {
		case <-ts.stdout.done:
		case <-time.After(5 * time.Second):
			t.Errorf("something still holds the command's stdout")
		}
	})
	t.Run("SIGTERM forwarded and handled", func(t *testing.T) {
		ts := startSandbox(t, false, "/bin/sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done")
		ts.stdout.waitFor(t, "ready\n")
		ts.Signal(syscall.SIGTERM)
		if code, err := ts.Wait(); code != 7 || err != nil {
			t.Errorf("Wait: %d, %v; want 7", code, err)
		}
	})
	t.Run("killed by a forwarded signal", func(t *testing.T) {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
			ts := startSandbox(t, false, "/bin/sh", "-c", "echo ready; exec sleep 300")
			ts.stdout.waitFor(t, "ready\n")
			ts.Signal(sig)
			if code, err := ts.Wait(); code != 128+int(sig) || err != nil {
				t.Errorf("after %v: %d, %v; want %d", sig, code, err, 128+int(sig))
			}
		}
	})
	t.Run("not found", func(t *testing.T) {
		ts := startSandbox(t, false, "/bin/sh", "-c", "exit 0")
		if code, err := ts.Wait(); code != 0 || err != nil {
			t.Errorf("Wait: %d, %v", code, err)
		}
		_, err := Start(wire.Spec{Hostname: "x", Link: &tap.Config{Name: "eth0", Mode: tap.ModeAuto, MTU: 1500, MAC: "02:42:0a:00:02:64",
			Address: netip.MustParsePrefix("10.0.2.100/24"), Gateway: netip.MustParseAddr("10.0.2.2")},
			Argv: []string{"no-such-command-sbtest"}, Env: os.Environ()}, Options{})
		var e *Error
		if !errors.As(err, &e) || e.Code != wire.ExitNotFound {
			t.Errorf("Start of a missing command: %v; want *Error 127", err)
		}
	})
}

// TestWhileStartingError: an error of Options.WhileStarting ends the start
// (the agent is killed) and is what Start returns.
func TestWhileStartingError(t *testing.T) {
	errPrepare := errors.New("prepare failed")
	ran := false
	_, err := Start(wire.Spec{Hostname: "x", Link: &tap.Config{Name: "eth0", Mode: tap.ModeAuto, MTU: 1500, MAC: "02:42:0a:00:02:64",
		Address: netip.MustParsePrefix("10.0.2.100/24"), Gateway: netip.MustParseAddr("10.0.2.2")},
		Argv: []string{"/bin/true"}, Env: os.Environ()},
		Options{WhileStarting: func(*wire.Spec) error { ran = true; return errPrepare }})
	if err != nil && strings.Contains(err.Error(), "user namespace") {
		t.Skipf("cannot make a sandbox here: %v", err)
	}
	if !ran || !errors.Is(err, errPrepare) {
		t.Errorf("Start: ran %v, %v; want WhileStarting run and its error", ran, err)
	}
}

// TestWhileStartingCompletesSpec: the spec goes to the agent once
// Options.WhileStarting has returned, with what it filled in (as a shared
// network's address, learnt from the daemon while the agent starts).
func TestWhileStartingCompletesSpec(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	sb, err := Start(wire.Spec{Hostname: "early", Argv: []string{"/bin/false"}, Env: os.Environ()},
		Options{Stdout: outW, Stderr: os.Stderr, WhileStarting: func(spec *wire.Spec) error {
			spec.Hostname = "late"
			spec.Link = &tap.Config{Name: "eth0", Mode: tap.ModeAuto, MTU: 1500, MAC: "02:42:0a:00:02:64",
				Address: netip.MustParsePrefix("10.0.2.100/24"), Gateway: netip.MustParseAddr("10.0.2.2")}
			spec.Argv = []string{"/bin/sh", "-c", "cat /proc/sys/kernel/hostname; case $(cat /proc/net/fib_trie) in *10.0.2.100*) echo addressed;; esac"}
			return nil
		}})
	outW.Close()
	if err != nil && strings.Contains(err.Error(), "user namespace") {
		t.Skipf("cannot make a sandbox here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Kill()
	if sb.Link().FD < 0 {
		t.Errorf("no eth0 descriptor for the link WhileStarting added")
	} else {
		defer unix.Close(sb.Link().FD)
	}
	if err := sb.Run(); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(outR)
	if code, err := sb.Wait(); code != 0 || err != nil {
		t.Errorf("Wait: %d, %v; want 0", code, err)
	}
	if got, want := string(out), "late\naddressed\n"; got != want {
		t.Errorf("the command saw %q; want %q (the spec as WhileStarting left it)", got, want)
	}
}

// TestExecVia runs execs through a real exec socket, as `netns-run exec`.
func TestExecVia(t *testing.T) {
	ts := startSandbox(t, false, "/bin/sh", "-c", "echo ready; exec sleep 300")
	ts.stdout.waitFor(t, "ready\n")
	sock := filepath.Join(t.TempDir(), "exec.sock")
	ln, err := ListenExec(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeExec(ctx, ln, ts.Sandbox) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 || st.Mode().Type() != os.ModeSocket {
		t.Errorf("exec socket: %v, %v; want a socket, mode 0600", st.Mode(), err)
	}
	via := func(req ExecRequest, input string) execResult {
		t.Helper()
		p := newPipes(t, input)
		code, err := ExecVia(sock, req, p.child[0], p.child[1], p.child[2])
		return p.result(t, code, err)
	}

	t.Run("stdio and status", func(t *testing.T) {
		r := via(sh(`cat; echo to-stderr >&2; cat /proc/sys/kernel/hostname; exit 3`), "abc\n")
		if r.code != 3 || r.err != nil || r.stdout != "abc\n"+testHostname+"\n" || r.stderr != "to-stderr\n" {
			t.Errorf("got %d, %v, stdout %q, stderr %q", r.code, r.err, r.stdout, r.stderr)
		}
	})

	t.Run("not found", func(t *testing.T) {
		r := via(ExecRequest{Argv: []string{"no-such-command-sbtest"}, Env: []string{"PATH=/bin"}}, "")
		var e *Error
		if r.code != wire.ExitNotFound || !errors.As(r.err, &e) || !strings.Contains(e.Msg, "no-such-command-sbtest") {
			t.Errorf("got %d, %v; want 127 and an *Error naming it", r.code, r.err)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		results := make([]execResult, 3)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := newPipes(t, "")
				code, err := ExecVia(sock, sh(fmt.Sprintf("sleep 0.3; echo %d; exit %d", i, i)), p.child[0], p.child[1], p.child[2])
				p.closeChild()
				<-p.stdout.done
				results[i] = execResult{code: code, err: err, stdout: p.stdout.String()}
			}()
		}
		wg.Wait()
		for i, r := range results {
			if r.code != i || r.err != nil || r.stdout != fmt.Sprintf("%d\n", i) {
				t.Errorf("exec %d: %d, %v, %q", i, r.code, r.err, r.stdout)
			}
		}
	})

	t.Run("SIGINT forwarded", func(t *testing.T) {
		// Should the signal arrive when ExecVia does not catch it, this
		// keeps it from ending the test binary.
		safety := make(chan os.Signal, 1)
		signal.Notify(safety, syscall.SIGINT)
		defer signal.Stop(safety)
		p := newPipes(t, "")
		done := make(chan execResult, 1)
		go func() {
			code, err := ExecVia(sock, sh(`trap 'echo got INT; exit 9' INT; echo ready; while :; do sleep 0.05; done`), p.child[0], p.child[1], p.child[2])
			done <- execResult{code: code, err: err}
		}()
		p.stdout.waitFor(t, "ready\n")
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		select {
		case r := <-done:
			r = p.result(t, r.code, r.err)
			if r.code != 9 || r.err != nil || !strings.Contains(r.stdout, "got INT") {
				t.Errorf("after SIGINT: %d, %v, %q", r.code, r.err, r.stdout)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the exec did not end after SIGINT")
		}
	})

	t.Run("tty", func(t *testing.T) {
		r := via(ExecRequest{Argv: []string{"/bin/sh", "-c", `test -t 0 && test -t 1 && echo is-a-tty; read x; echo "got $x"`}, Tty: true}, "hello\n")
		if r.code != 0 || r.err != nil || !strings.Contains(r.stdout, "is-a-tty") || !strings.Contains(r.stdout, "got hello") {
			t.Errorf("exec -t: %d, %v, %q", r.code, r.err, r.stdout)
		}
	})

	t.Run("client gone", func(t *testing.T) {
		// A client that disconnects takes its process with it.
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		p := newPipes(t, "")
		if err := wire.SendFiles(c, wire.AgentMessage{Exec: &wire.ExecSpec{Argv: []string{"/bin/sleep", "300"}}}, p.child[:]); err != nil {
			t.Fatal(err)
		}
		m, _, err := wire.RecvAgent(c)
		if err != nil || m.ExecStarted == nil {
			t.Fatalf("reply %+v, %v; want execStarted", m, err)
		}
		pid := m.ExecStarted.Pid
		c.Close()
		p.closeChild()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			r := via(sh(fmt.Sprintf("kill -0 %d 2>/dev/null", pid)), "")
			if r.code != 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still runs in the sandbox 5s after its client went away", pid)
			}
		}
	})

	t.Run("no sandbox", func(t *testing.T) {
		p := newPipes(t, "")
		code, err := ExecVia(filepath.Join(t.TempDir(), "none.sock"), sh("true"), p.child[0], p.child[1], p.child[2])
		p.closeChild()
		if code != wire.ExitOwnError || err == nil {
			t.Errorf("no socket: %d, %v; want 125 and an error", code, err)
		}
	})
}

// TestExecSocketLongPath: an exec socket in a directory too deep for a
// unix socket address still works, and leaves neither file nor descriptor.
func TestExecSocketLongPath(t *testing.T) {
	ts := startSandbox(t, false, "/bin/sh", "-c", "echo ready; exec sleep 300")
	ts.stdout.waitFor(t, "ready\n")
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, strings.Repeat("f", 64)+".sock")
	p := newPipes(t, "")
	fdsBefore := openFDs(t)
	ln, err := ListenExec(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("the socket at %s: %v, %v", sock, st, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ServeExec(ctx, ln, ts.Sandbox) }()
	code, err := ExecVia(sock, sh("echo via-long-path; exit 5"), p.child[0], p.child[1], p.child[2])
	if r := p.result(t, code, err); r.code != 5 || r.err != nil || r.stdout != "via-long-path\n" {
		t.Errorf("ExecVia: %d, %v, %q", r.code, r.err, r.stdout)
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("ServeExec: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is still there after ServeExec: %v", err)
	}
	// Our copies of the process's pipe ends were closed (3 fewer).
	if after := openFDs(t); after > fdsBefore-3 {
		t.Errorf("%d descriptors open before ListenExec, %d after ServeExec", fdsBefore, after)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
