// Package agent is pid 1 of a sandbox: the re-executed binary that
// sandbox.Start runs in the new namespaces. It makes eth0 (package tap) and
// hands its descriptor out, with those of the -T listeners it binds on the
// sandbox's loopback; places /etc/hosts, resolv.conf and hostname in its
// own mount namespace and mounts a fresh /proc; then runs the command,
// reaps every orphan, spawns the commands of exec inside (a multithreaded
// Go process cannot setns into a user namespace, so the supervisor cannot),
// adds interfaces, and serves dial channels for the loopback fast path.
// When it exits the kernel kills whatever is left in the sandbox. It
// speaks to its supervisor in internal/wire's AgentMessage.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/hosts"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// IsChild reports whether this process was started as a sandbox agent (by
// sandbox.Start).
func IsChild() bool {
	v := os.Getenv(wire.AgentEnv)
	return v == wire.StageAgent || v == wire.StageRemap
}

// Main is the agent: it never returns.
func Main() {
	if os.Getenv(wire.AgentEnv) == wire.StageRemap {
		reexecWhenMapped()
	}
	f := os.NewFile(wire.AgentControlFD, "sandbox-control")
	conn, err := wire.FileConn(f) // dups with CLOEXEC; the command must not inherit it
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "netns-run: sandbox agent: %v\n", err)
		os.Exit(wire.ExitOwnError)
	}
	os.Exit(runAgent(conn))
}

// reexecWhenMapped waits for the supervisor to write the id maps through
// newuidmap, then executes the agent again: capabilities are computed at
// execve, and at the first one the agent's uid was not mapped yet, so it
// has none in its own namespace until it is root there at an execve.
func reexecWhenMapped() {
	var b [64]byte
	if n, err := unix.Read(wire.AgentControlFD, b[:]); err != nil || n == 0 {
		os.Exit(wire.ExitOwnError) // the supervisor is gone; it reports
	}
	os.Setenv(wire.AgentEnv, wire.StageAgent)
	err := unix.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "netns-run: sandbox agent: re-exec after id mapping: %v\n", err)
	os.Exit(wire.ExitOwnError)
}

func runAgent(conn *net.UnixConn) int {
	// /proc does not wait for the spec, which on a shared network waits
	// for the daemon's answer (a daemon's whole start, on the first run).
	proc := make(chan error, 1)
	go func() { proc <- mountProc() }()
	m, fds, err := wire.RecvAgent(conn)
	wire.CloseFDs(fds)
	if err != nil || m.Spec == nil {
		return wire.ExitOwnError // the supervisor is gone or broken; it reports
	}
	spec := m.Spec
	if err := sameBuild(spec.Build, wire.Build()); err != nil {
		return fail(conn, wire.ExitOwnError, "%v", err)
	}
	if len(spec.Argv) == 0 {
		return fail(conn, wire.ExitOwnError, "no command given")
	}
	path, err := exec.LookPath(spec.Argv[0])
	if err != nil {
		return fail(conn, lookPathStatus(err), "%s", lookPathMessage(spec.Argv[0], err))
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return fail(conn, wire.ExitOwnError, "set hostname: %v", err)
	}
	// The files and /proc (mounts) do not wait for eth0 (netlink): made
	// side by side they delay the command ~0.15 ms less.
	placed := make(chan []string, 1)
	go func() { placed <- placeFiles(spec.Files, proc) }()
	link := tap.Link{FD: -1}
	switch {
	case spec.HostNetwork: // the caller's network, as it is
	case spec.Link == nil:
		err = tap.LoopbackUp()
	default:
		if link, err = tap.Make(*spec.Link); err != nil {
			err = fmt.Errorf("make %s: %w", spec.Link.Name, err)
		}
	}
	warnings := <-placed
	if err != nil {
		return fail(conn, wire.ExitOwnError, "%v", err)
	}
	listeners, err := listenLoopback(spec.LoopbackTCP)
	if err != nil {
		return fail(conn, wire.ExitOwnError, "%v", err)
	}
	reply := &wire.Made{Warnings: warnings, Listeners: len(listeners)}
	var passed []int
	if link.FD >= 0 {
		reply.Link = &link.Mode
		passed = append(passed, link.FD)
	}
	passed = append(passed, listeners...)
	err = wire.Send(conn, wire.AgentMessage{Made: reply}, passed...)
	wire.CloseFDs(passed)
	if err != nil {
		return wire.ExitOwnError
	}
	signals := catchSignals()
	// Until the start, the supervisor may add interfaces (a kernel
	// macvlan it moved in), one request at a time.
	for {
		m, fds, err := wire.RecvAgent(conn)
		wire.CloseFDs(fds)
		if err != nil {
			return wire.ExitOwnError
		}
		if m.Start != nil {
			break
		}
		if m.AddLink == nil {
			return wire.ExitOwnError
		}
		(&agent{conn: conn}).addLink(*m.AddLink)
	}
	return runCommand(conn, path, spec, signals())
}

// placeFiles places the sandbox's files (/etc/hosts, ...) once proc, the
// mount of its /proc, is done; what neither could do are warnings.
func placeFiles(files map[string][]byte, proc <-chan error) []string {
	var warnings []string
	if err := <-proc; err != nil {
		warnings = append(warnings, err.Error())
	}
	if err := hosts.Place(files); err != nil {
		warnings = append(warnings, err.Error())
	}
	return warnings
}

// mountProc mounts a procfs of the sandbox's pid namespace over /proc, so
// that ps and /proc/PID show the sandbox's processes only. The kernel
// refuses (EPERM) when the /proc we were given is not fully visible, e.g.
// partly masked inside a container: then the host's stays, with a warning.
func mountProc() error {
	// Never propagate to the host's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("cannot mount a /proc of the sandbox (make / private: %v); ps in the sandbox shows the host's processes", err)
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	err := unix.Mount("proc", "/proc", "proc", flags, "")
	if errors.Is(err, unix.EPERM) {
		// A read-only /proc can only be mounted again read-only.
		err = unix.Mount("proc", "/proc", "proc", flags|unix.MS_RDONLY, "")
	}
	if err != nil {
		why := ""
		if errors.Is(err, unix.EPERM) {
			why = " (is /proc partly masked, as in a container?)"
		}
		return fmt.Errorf("cannot mount a /proc of the sandbox: %v%s; ps in the sandbox shows the host's processes", err, why)
	}
	return nil
}

// catchSignals starts catching the signals the agent forwards to its
// command, in the background; the returned function waits until they are
// caught. Catching them (not ignoring them: ignored signals would be
// inherited) before the command starts also makes pid 1 receive them at
// all: the kernel drops a signal to a namespace's init that has no handler.
// The Go runtime takes ~0.45 ms to enable the seven, one hand-off to its
// signal thread each: runAgent starts this once it has sent eth0, so that
// it overlaps with the wait for the supervisor's start.
func catchSignals() func() <-chan os.Signal {
	sigs := make(chan os.Signal, 8)
	caught := make(chan struct{})
	go func() {
		signal.Notify(sigs, wire.ForwardedSignals...)
		close(caught)
	}()
	return func() <-chan os.Signal {
		<-caught
		return sigs
	}
}

// runCommand starts the command, forwards the signals the agent receives,
// serves exec requests and returns the command's exit status. The agent is
// pid 1 of the sandbox: every orphan comes back to it and is reaped. When
// the command ends, whatever is left in the sandbox is killed (as Docker
// stops a container with its main process) and the execs among it are
// reported; the kernel would kill them anyway when pid 1 exits.
func runCommand(conn *net.UnixConn, path string, spec *wire.Spec, sigs <-chan os.Signal) int {
	cmd := exec.Command(path)
	cmd.Args = spec.Argv
	cmd.Env = withoutMarker(spec.Env)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if spec.Tty {
		// The supervisor's pty: the command's controlling terminal, so
		// that ^C and window changes reach it as on a terminal.
		cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	}
	if err := cmd.Start(); err != nil {
		code := lookPathStatus(err)
		wire.Send(conn, wire.AgentMessage{Failed: &wire.Failure{Error: lookPathMessage(spec.Argv[0], err), Code: code}})
		return code
	}
	a := &agent{
		conn:    conn,
		env:     cmd.Env,
		mainPid: cmd.Process.Pid,
		byPid:   map[int]*agentExec{},
		byID:    map[uint64]*agentExec{},
		stopped: make(chan struct{}),
	}
	mainDone := make(chan unix.WaitStatus, 1)
	reaped := make(chan struct{})
	go a.reap(mainDone, reaped)
	go a.serve() // ends with the control socket; the process does not wait for it

	var ws unix.WaitStatus
wait:
	for {
		select {
		case sig := <-sigs:
			cmd.Process.Signal(sig)
		case ws = <-mainDone:
			break wait
		}
	}
	a.stop()
	// Everything was killed; reap it and report the execs. Bounded: a
	// process stuck in the kernel must not keep the sandbox up (the
	// kernel finishes the job when we exit).
	bound, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-reaped: // no report starts after this
		reported := make(chan struct{})
		go func() { a.reports.Wait(); close(reported) }()
		select {
		case <-reported:
		case <-bound.Done():
		}
	case <-bound.Done():
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// execPoll is how often reap looks for an exec started after the
// command ended, until stop.
var execPoll = 10 * time.Millisecond

// agent is the state of a running sandbox's pid 1.
type agent struct {
	conn    *net.UnixConn
	env     []string // the command's, the default of execs
	mainPid int

	mu       sync.Mutex
	byPid    map[int]*agentExec
	byID     map[uint64]*agentExec
	stopping bool           // the command ended: no more execs
	stopped  chan struct{}  // closed when stopping is set
	reports  sync.WaitGroup // execExited messages being sent
}

// agentExec is one running exec. It stays in the maps until reaped, so
// its pid cannot be reused while it is there.
type agentExec struct {
	id      uint64
	proc    *os.Process
	started chan struct{} // closed once execStarted is sent
}

// reap reaps every child of pid 1, orphans included, and hands each status
// to its waiter: the command's to mainDone, an exec's to a report. It
// returns when the sandbox is stopping and nothing is left. cmd.Wait is
// not used anywhere: a wait on one pid would leave orphans as zombies and
// race with this one.
func (a *agent) reap(mainDone chan<- unix.WaitStatus, reaped chan<- struct{}) {
	defer close(reaped)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil { // ECHILD: nothing left, for now
			a.mu.Lock()
			stopping := a.stopping
			a.mu.Unlock()
			if stopping {
				return
			}
			// Only between the command's end and stop, which comes at
			// once: it is waited for, not slept through (a sleep here
			// kept every sandbox up 10 ms after its command). Looked
			// again for an exec started meanwhile, as before.
			select {
			case <-a.stopped:
			case <-time.After(execPoll):
			}
			continue
		}
		a.mu.Lock()
		switch e := a.byPid[pid]; {
		case pid == a.mainPid:
			mainDone <- ws
		case e != nil:
			delete(a.byPid, pid)
			delete(a.byID, e.id)
			a.report(e, pid, ws, a.stopping && ws.Signaled() && ws.Signal() == unix.SIGKILL)
		}
		a.mu.Unlock()
	}
}

// report sends an exec's exit once its start was sent. Called with a.mu.
func (a *agent) report(e *agentExec, pid int, ws unix.WaitStatus, stopped bool) {
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	e.proc.Release()
	a.reports.Add(1)
	go func() {
		defer a.reports.Done()
		<-e.started
		wire.Send(a.conn, wire.AgentMessage{ExecExited: &wire.ExecStatus{ID: e.id, Pid: pid, Code: code, Stopped: stopped}})
	}()
}

// stop refuses further execs and kills every process of the sandbox but
// pid 1 (kill -1 from a namespace's init reaches exactly its namespace).
func (a *agent) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopping = true
	close(a.stopped)
	unix.Kill(-1, unix.SIGKILL)
}

// serve handles the supervisor's requests until the control socket ends.
// A supervisor that dies takes the agent with it (Pdeathsig).
func (a *agent) serve() {
	for {
		m, fds, err := wire.NextAgentMessage(a.conn)
		if err != nil {
			return
		}
		switch {
		case m.Exec != nil:
			a.startExec(m.Exec, fds)
		case m.Signal != nil:
			wire.CloseFDs(fds)
			a.signalExec(m.Signal)
		case m.DialChannel != nil && len(fds) == 1:
			go serveDialChannel(fds[0])
		case m.AddLink != nil:
			wire.CloseFDs(fds)
			go a.addLink(*m.AddLink)
		default:
			wire.CloseFDs(fds)
		}
	}
}

// startExec runs one exec with fds as its stdin, stdout and stderr and
// replies execStarted, or execExited with the reason it did not start.
func (a *agent) startExec(req *wire.ExecSpec, fds []int) {
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		// Blocking, as os/exec makes a child's stdio (File.Fd): most
		// programs fail on EAGAIN. This is the open file's mode, shared
		// with the client, which gave these files away.
		unix.SetNonblock(fd, false)
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("exec-stdio-%d", i))
	}
	defer func() {
		for _, f := range files {
			f.Close() // the process has its own copies
		}
	}()
	refuse := func(code int, format string, args ...any) {
		wire.Send(a.conn, wire.AgentMessage{ExecExited: &wire.ExecStatus{ID: req.ID, Code: code, Error: fmt.Sprintf(format, args...)}})
	}
	if len(files) != 3 {
		refuse(wire.ExitOwnError, "exec: want 3 descriptors (stdin, stdout, stderr), got %d", len(files))
		return
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		refuse(wire.ExitOwnError, "exec: no command given")
		return
	}
	env := a.env
	if req.Env != nil {
		env = withoutMarker(req.Env)
	}
	var cred *syscall.Credential
	if req.User != "" {
		c, home, err := execCredential(req.User)
		if err != nil {
			refuse(wire.ExitCannotInvoke, "exec -u: %v", err)
			return
		}
		cred = c
		env = wire.MergeEnv(env, []string{"HOME=" + home}) // the user's, unless -e HOME says otherwise
	}
	env = wire.MergeEnv(env, req.EnvSet)
	if req.Dir != "" {
		if st, err := os.Stat(req.Dir); err != nil || !st.IsDir() {
			if err == nil {
				err = unix.ENOTDIR
			}
			refuse(wire.ExitCannotInvoke, "exec: working directory %s: %v", req.Dir, err)
			return
		}
	}
	path, err := lookPathIn(req.Argv[0], pathOf(env), req.Dir)
	if err != nil {
		refuse(lookPathStatus(err), "%s", lookPathMessage(req.Argv[0], err))
		return
	}
	cmd := exec.Command(path)
	cmd.Args = req.Argv
	cmd.Env = env
	cmd.Dir = req.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	// A session of its own: a terminal's signals meant for the
	// supervisor's foreground group must not reach it.
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if req.Tty {
		attr.Setctty, attr.Ctty = true, 0
	}
	cmd.SysProcAttr = attr
	e := &agentExec{id: req.ID, started: make(chan struct{})}

	a.mu.Lock()
	if a.stopping {
		a.mu.Unlock()
		wire.Send(a.conn, wire.AgentMessage{ExecExited: &wire.ExecStatus{ID: req.ID, Code: wire.ExitKilled, Stopped: true, Error: "the sandbox is stopping"}})
		return
	}
	if a.byID[req.ID] != nil {
		a.mu.Unlock()
		refuse(wire.ExitOwnError, "exec: id %d is in use", req.ID)
		return
	}
	err = cmd.Start()
	pid := 0
	if err == nil {
		pid = cmd.Process.Pid // not after unlock: report releases it
		e.proc = cmd.Process
		a.byPid[pid] = e
		a.byID[req.ID] = e
	}
	a.mu.Unlock()
	if err != nil {
		code, msg := lookPathStatus(err), lookPathMessage(req.Argv[0], err)
		if req.Tty && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTTY)) {
			code, msg = wire.ExitCannotInvoke, fmt.Sprintf("exec with a terminal: its stdin must be a terminal of no other session (a fresh pty): %v", err)
		}
		refuse(code, "%s", msg)
		return
	}
	wire.Send(a.conn, wire.AgentMessage{ExecStarted: &wire.ExecStatus{ID: req.ID, Pid: pid}})
	close(e.started)
}

// execCredential is who exec -u spec runs as, and its home, once the
// sandbox's user namespace is known to map its ids.
func execCredential(spec string) (*syscall.Credential, string, error) {
	c, err := resolveUser(spec, osUsers{})
	if err != nil {
		return nil, "", err
	}
	uidMap, err1 := os.ReadFile("/proc/self/uid_map")
	gidMap, err2 := os.ReadFile("/proc/self/gid_map")
	if err := errors.Join(err1, err2); err != nil {
		return nil, "", fmt.Errorf("the sandbox's id maps: %w", err)
	}
	if err := checkMapped(c, parseIDMap(uidMap), parseIDMap(gidMap)); err != nil {
		return nil, "", err
	}
	// A namespace mapped without newgidmap may not set groups; its only
	// group is then 0, which checkMapped made sure of.
	sg, _ := os.ReadFile("/proc/self/setgroups")
	noSetGroups := strings.TrimSpace(string(sg)) == "deny"
	return &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: c.groups, NoSetGroups: noSetGroups}, c.home, nil
}

// signalExec signals a running exec; one that has ended is ignored.
func (a *agent) signalExec(s *wire.ExecSignal) {
	if s.Signal <= 0 || s.Signal > 64 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.byID[s.ID]; e != nil {
		e.proc.Signal(syscall.Signal(s.Signal))
	}
}

// pathOf returns the PATH of env.
func pathOf(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return ""
}

// lookPathIn is exec.LookPath with the PATH of the exec's environment
// rather than the agent's. A name with a slash is taken as is (relative
// to dir); relative PATH entries are skipped, as Go's ErrDot would.
func lookPathIn(name, path, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", &exec.Error{Name: name, Err: err}
		}
		return name, nil
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// fail reports an error to the supervisor and returns its exit status.
func fail(conn *net.UnixConn, code int, format string, a ...any) int {
	wire.Send(conn, wire.AgentMessage{Failed: &wire.Failure{Error: fmt.Sprintf(format, a...), Code: code}})
	return code
}

// sameBuild refuses a spec from a supervisor of another build than this
// agent (netns-run-agent installed apart from netns-run): the messages
// between them may differ.
func sameBuild(supervisor, own string) error {
	if supervisor == own {
		return nil
	}
	self, _ := os.Executable()
	return fmt.Errorf("the sandbox agent %s is of another build (%q) than netns-run (%q): install both from one build (make install)", self, own, supervisor)
}

// withoutMarker is env without AgentEnv.
func withoutMarker(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, wire.AgentEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func lookPathStatus(err error) int {
	if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOEXEC) {
		return wire.ExitCannotInvoke
	}
	return wire.ExitNotFound
}

func lookPathMessage(name string, err error) string {
	if lookPathStatus(err) == wire.ExitCannotInvoke {
		return fmt.Sprintf("cannot run %s: permission denied (is it executable?)", name)
	}
	return fmt.Sprintf("%s: executable file not found in $PATH", name)
}
