package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netns-run/netns-run/e2e/internal/fakedns"
	"github.com/netns-run/netns-run/e2e/internal/whoami"
	"github.com/netns-run/netns-run/e2e/internal/worldapi"
)

// Bounds. Every process a test starts is killed (by its pid) when one runs
// out; no test waits on anything without one.
const (
	runTimeout  = 30 * time.Second // one netns-run to completion
	maxLifetime = 90 * time.Second // a started netns-run, whatever the test does
	lineTimeout = 20 * time.Second // waiting for an expected line of output
)

// result is how a finished command ended.
type result struct {
	code   int    // exit status; -1 if killed by a signal
	signal string // the signal that killed it, if any
	stdout string
	stderr string
	// pipesHeld: after the process exited, something else (a process it
	// left behind) still held its stdout or stderr open.
	pipesHeld bool
}

func (r result) String() string {
	how := fmt.Sprintf("exit status %d", r.code)
	if r.signal != "" {
		how = "killed by " + r.signal
	}
	if r.pipesHeld {
		how += " (its stdout/stderr were still held open by another process after it exited)"
	}
	return fmt.Sprintf("%s\n--- stdout:\n%s\n--- stderr:\n%s", how, indent(r.stdout), indent(r.stderr))
}

func indent(s string) string {
	if s == "" {
		return "\t(empty)"
	}
	return "\t" + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n\t")
}

type cmdOpts struct {
	env     []string // added to (and overriding) the test's environment
	timeout time.Duration
	stdin   io.Reader
}

// started records the pids this test binary started, so that the leftover
// checks never mistake one of them for an orphan.
var started sync.Map // pid -> struct{}

// lockedBuffer collects a stream while tests poll it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a started command.
type proc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout lockedBuffer
	stderr lockedBuffer
	done   chan struct{}
	res    result
	timer  *time.Timer
}

func requireNetnsRun(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(netnsRun); err != nil {
		t.Fatalf("the netns-run binary is missing: %v (build it: go build -o bin/netns-run ./cmd/netns-run)", err)
	}
}

// startCmd starts name with args. The process is killed, by its pid, after
// o.timeout (default maxLifetime) and when the test ends.
func startCmd(t *testing.T, o cmdOpts, name string, args ...string) *proc {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = maxLifetime
	}
	p := &proc{t: t, name: filepath.Base(name), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), o.env...)
	p.cmd.Stdin = o.stdin
	// Our own pipes, so that the exit of the process is seen at once even
	// when a leftover process keeps its stdout or stderr open.
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = outW, errW
	err = p.cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	copied := make(chan struct{}, 2)
	for _, c := range []struct {
		dst *lockedBuffer
		src *os.File
	}{{&p.stdout, outR}, {&p.stderr, errR}} {
		go func() {
			_, _ = io.Copy(c.dst, c.src)
			copied <- struct{}{}
		}()
	}
	pid := p.cmd.Process.Pid
	started.Store(pid, struct{}{})
	t.Logf("started %s (pid %d): %s", p.name, pid, shellQuote(args))
	p.timer = time.AfterFunc(o.timeout, func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	})
	go func() {
		err := p.cmd.Wait()
		p.timer.Stop()
		// Take what the process wrote; give up waiting for EOF if
		// something else still holds the pipes.
		grace := time.After(2 * time.Second)
	drain:
		for range 2 {
			select {
			case <-copied:
			case <-grace:
				p.res.pipesHeld = true
				break drain
			}
		}
		if !p.res.pipesHeld {
			// Now, not at the test's end: TestSoak starts tens of
			// thousands of processes in one test (make soak ran out
			// of descriptors at the 12,000th).
			outR.Close()
			errR.Close()
		}
		p.res.stdout, p.res.stderr = p.stdout.String(), p.stderr.String()
		ps := p.cmd.ProcessState
		switch {
		case ps == nil:
			p.res.code = -1
			p.res.signal = fmt.Sprint(err)
		default:
			p.res.code = ps.ExitCode()
			if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.res.signal = ws.Signal().String()
			}
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		outR.Close()
		errR.Close()
	})
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit 10s after SIGKILL", p.name, pid)
		}
	})
	return p
}

// startNR starts netns-run with args.
func startNR(t *testing.T, args ...string) *proc {
	t.Helper()
	requireNetnsRun(t)
	return startCmd(t, cmdOpts{}, netnsRun, onPrivate(args)...)
}

// onPrivate makes a run that names no network use --network private: the
// suites of the core sandbox check its fixed 10.0.2.0/24 layout, and the
// shared networks have suites of their own (segment_test.go).
func onPrivate(args []string) []string {
	i := 0
	if len(args) > 0 && args[0] == "run" {
		i = 1
	} else if len(args) > 0 && args[0] != "--" && !strings.HasPrefix(args[0], "-") {
		return args // another subcommand
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--network" || strings.HasPrefix(a, "--network=") {
			return args
		}
	}
	out := append([]string{}, args[:i]...)
	out = append(out, "--network", "private")
	return append(out, args[i:]...)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit, killing it if it takes longer than
// timeout.
func (p *proc) wait(timeout time.Duration) result {
	p.t.Helper()
	select {
	case <-p.done:
		return p.res
	case <-time.After(timeout):
	}
	_ = syscall.Kill(p.pid(), syscall.SIGKILL)
	<-p.done
	p.t.Fatalf("%s (pid %d) still running after %v; killed it.\n%s", p.name, p.pid(), timeout, p.res)
	return p.res
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := syscall.Kill(p.pid(), sig); err != nil {
		p.t.Fatalf("sending %v to %s (pid %d): %v", sig, p.name, p.pid(), err)
	}
}

// waitLine waits until a line of the stream ("stdout" or "stderr") matches
// re and returns the submatches. It fails the test if the process exits or
// lineTimeout passes first.
func (p *proc) waitLine(stream string, re *regexp.Regexp) []string {
	p.t.Helper()
	buf := &p.stdout
	if stream == "stderr" {
		buf = &p.stderr
	}
	deadline := time.Now().Add(lineTimeout)
	for {
		exited := p.exited() // before reading, so that no output is missed
		for _, l := range strings.Split(buf.String(), "\n") {
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		}
		if exited {
			p.t.Fatalf("%s exited before printing a line matching %q on %s:\n%s", p.name, re, stream, p.res)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no line matching %q on %s of %s after %v:\n--- stdout:\n%s\n--- stderr:\n%s",
				re, stream, p.name, lineTimeout, indent(p.stdout.String()), indent(p.stderr.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var readyRE = regexp.MustCompile(`^ready$`)

// waitReady waits for a probe's "ready" on stdout.
func (p *proc) waitReady() { p.t.Helper(); p.waitLine("stdout", readyRE) }

// runCmd runs name with args to completion (bounded by o.timeout, default
// runTimeout) and returns how it ended.
func runCmd(t *testing.T, o cmdOpts, name string, args ...string) result {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = runTimeout
	}
	life := o.timeout
	o.timeout += 10 * time.Second // the kill timer is only a backstop for wait
	p := startCmd(t, o, name, args...)
	return p.wait(life)
}

// runNR runs netns-run with args to completion.
func runNR(t *testing.T, args ...string) result {
	t.Helper()
	requireNetnsRun(t)
	return runCmd(t, cmdOpts{}, netnsRun, onPrivate(args)...)
}

// runNRWith runs netns-run with extra environment and a timeout.
func runNRWith(t *testing.T, o cmdOpts, args ...string) result {
	t.Helper()
	requireNetnsRun(t)
	return runCmd(t, o, netnsRun, onPrivate(args)...)
}

// sandboxed is `netns-run [flags] -- probe ARGS...`.
func sandboxed(flags []string, probeArgs ...string) []string {
	args := append([]string{}, flags...)
	args = append(args, "--", probe)
	return append(args, probeArgs...)
}

func wantExit(t *testing.T, r result, code int, what string) {
	t.Helper()
	if r.signal != "" || r.code != code {
		t.Fatalf("%s: want exit status %d, got:\n%s", what, code, r)
	}
}

// wantOwnError checks a netns-run error: status 125 and one line on stderr
// starting "netns-run: " that contains every part of want.
func wantOwnError(t *testing.T, r result, what string, want ...string) string {
	t.Helper()
	wantExit(t, r, exitOwnErr, what)
	msg := strings.TrimRight(r.stderr, "\n")
	if msg == "" || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "netns-run: ") {
		t.Errorf("%s: want exactly one line on stderr starting %q, got:\n%s", what, "netns-run: ", indent(r.stderr))
	}
	t.Logf("%s: netns-run said: %s", what, msg)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: the error should mention %q, got: %s", what, w, msg)
		}
	}
	return msg
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\;&|<>*?()[]{}") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// world returns a client of the world agent.
func world() *worldapi.Client { return worldapi.New(worldSock) }

// worldDial makes the world host (198.51.100.2) dial addr in the host
// namespace and returns the exchange.
func worldDial(t *testing.T, network, addr, send string, timeout time.Duration) worldapi.DialResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	resp, err := world().Dial(ctx, worldapi.DialRequest{
		Net: network, Addr: addr, Send: send, TimeoutMS: int(timeout / time.Millisecond),
	})
	if err != nil {
		t.Fatalf("world agent: dial %s %s: %v", network, addr, err)
	}
	return resp
}

// startFakeDNS serves records on 127.0.0.1 (UDP and TCP, one port) in the
// host namespace and returns its address; it stops when the test ends.
func startFakeDNS(t *testing.T, records map[string][]string) (string, *fakedns.Server) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("fake DNS: %v", err)
		}
		addr := pc.LocalAddr().String()
		tl, err := net.Listen("tcp4", addr)
		if err != nil {
			pc.Close() // the TCP port is taken: try another
			continue
		}
		srv, err := fakedns.Start(pc, tl, records)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		return addr, srv
	}
	t.Fatal("fake DNS: no port free for both UDP and TCP")
	return "", nil
}

// closedPort returns a 127.0.0.1 port on which nothing listens, TCP or UDP.
func closedPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return port
}

// serveWhoamiTCP listens on addr (host namespace) with the whoami server.
func serveWhoamiTCP(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	go func() { _ = whoami.ServeTCP(l) }()
	t.Cleanup(func() { l.Close() })
	return l
}

// serveWhoamiUDP listens on addr (host namespace) with the whoami server.
func serveWhoamiUDP(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	go func() { _ = whoami.ServeUDP(pc) }()
	t.Cleanup(func() { pc.Close() })
	return pc
}

// tcpExchange dials addr from the host namespace (retrying refused dials
// until timeout: a published port may take a moment), sends send,
// half-closes and returns everything read until EOF.
func tcpExchange(t *testing.T, network, addr, send string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var c net.Conn
	var err error
	for {
		c, err = net.DialTimeout(network, addr, time.Until(deadline))
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			t.Fatalf("dial %s %s: %v", network, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatalf("send to %s: %v", addr, err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s: %v (got %q so far)", addr, err, b)
	}
	return string(b)
}

// udpExchange sends send to addr from the host namespace, again every
// 500ms, and returns the first reply.
func udpExchange(t *testing.T, network, addr, send string, timeout time.Duration) string {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	var last error
	for time.Now().Before(deadline) {
		_, _ = io.WriteString(c, send)
		next := time.Now().Add(500 * time.Millisecond)
		if next.After(deadline) {
			next = deadline
		}
		_ = c.SetReadDeadline(next)
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
		last = err
		if errors.Is(err, syscall.ECONNREFUSED) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Fatalf("no UDP reply from %s within %v (last error: %v)", addr, timeout, last)
	return ""
}

// procStat is what the leftover checks (and the flood's CPU figure) need
// from /proc/PID/stat.
type procStat struct {
	pid       int
	ppid      int
	state     byte
	startTime uint64 // clock ticks since boot: tells a pid's reuse apart
	cpuTicks  uint64 // user and system time, in clock ticks
	comm      string
}

func (s procStat) String() string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.pid))
	cl := strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	return fmt.Sprintf("pid %d (%s, state %c, parent %d): %s", s.pid, s.comm, s.state, s.ppid, cl)
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return procStat{}, false
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{pid: pid, ppid: ppid, state: f[0][0], startTime: start, cpuTicks: utime + stime, comm: s[open+1 : close]}, true
}

func allProcs() []procStat {
	ents, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(pid); ok {
			out = append(out, st)
		}
	}
	return out
}

// descendants lists the living descendants of pid.
func descendants(pid int) []procStat {
	procs := allProcs()
	children := map[int][]procStat{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p)
	}
	var out []procStat
	queue := []int{pid}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, c := range children[cur] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

// stillAlive tells whether the process p recorded is still there (same pid
// and start time, not a zombie).
func stillAlive(p procStat) bool {
	now, ok := readStat(p.pid)
	return ok && now.startTime == p.startTime && now.state != 'Z'
}

// orphansSince lists our children that we did not start (the kernel
// re-parented them to us, the subreaper) and that started at or after
// startTime. Zombies among them are reaped (they are nobody else's) and not
// listed.
func orphansSince(startTime uint64) []procStat {
	self := os.Getpid()
	var out []procStat
	for _, p := range allProcs() {
		if p.ppid != self || p.startTime < startTime {
			continue
		}
		if _, ours := started.Load(p.pid); ours {
			continue
		}
		if p.state == 'Z' {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil)
			continue
		}
		out = append(out, p)
	}
	return out
}

// listTree lists every entry under dir, relative to it.
func listTree(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

// readLines returns the lines of a file.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

func dialReq(network, addr string) worldapi.DialRequest {
	return worldapi.DialRequest{Net: network, Addr: addr, TimeoutMS: 2000}
}
