package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/tap"
	"golang.org/x/sys/unix"
)

// Options are the supervisor-side choices of how the sandbox is made.
type Options struct {
	// AutoUserNS maps a subordinate id range through newuidmap/newgidmap,
	// so that a command that drops to another uid works. Without it only
	// the caller is mapped, to root.
	AutoUserNS bool
	Stdin      *os.File
	Stdout     *os.File
	Stderr     *os.File
	// WhileStarting, if set, runs while the agent starts: after it was
	// executed, before the spec is sent. The agent needs ~5 ms until it
	// reads the spec (a Go runtime in fresh namespaces), in which the
	// caller can do what does not need the sandbox, and complete the
	// spec with what it learns meanwhile (a shared network's address,
	// from the daemon); only HostNetwork, Tty and LoopbackTCP's length
	// were read before, and must stay. Its error ends the start. Not
	// earlier: until the agent is executed it shares this process's
	// pages copy-on-write, and work here would fault on them.
	WhileStarting func(spec *wire.Spec) error
	// Tty gives the command a new pty (spec.Tty must say so too), copied
	// to Stdout and, with Interactive, from Stdin (run -t, run -it).
	Tty         bool
	Interactive bool
}

// Sandbox is a started agent whose eth0 exists; Run lets its command go.
//
// After Run, one goroutine (the reader) reads the control socket and
// dispatches the agent's messages: the command's start error to Wait, exec
// starts and exits to their waiters. It ends when the agent closes the
// socket (it exited) or when Wait or Kill close it.
type Sandbox struct {
	cmd       *exec.Cmd
	conn      *net.UnixConn
	link      tap.Link
	listeners []net.Listener
	warnings  []string

	reapOnce sync.Once
	exited   chan struct{} // closed once the agent is reaped
	waitErr  error         // cmd.Wait's, valid once exited is closed

	mu         sync.Mutex
	running    bool          // Run sent start; the reader runs
	ended      bool          // the reader has stopped: no more execs
	readerDone chan struct{} // closed when the reader stops
	reported   *Error        // the command could not start
	nextID     uint64
	execs      map[uint64]*ExecProcess
	linkReply  chan linkResult // the pending AddLink's, if any
	linkCall   sync.Mutex      // one AddLink at a time
	tty        *ptyRelay       // the command's terminal (run -t), or nil
	// attaches are the attached clients (attach); attachEnded: the
	// command ended, they were told, and no more are taken.
	attaches    map[*attachSession]struct{}
	attachEnded bool
}

// AgentBinary is the agent's own binary (cmd/netns-run-agent), looked for
// beside this one: pid 1 of a sandbox needs none of netns-run's network
// stack, and a binary without it costs each sandbox fewer pages and less
// start-up. Without it this binary is the agent (main runs agent.Main).
const AgentBinary = "netns-run-agent"

// agentPath is the binary that becomes the agent: AgentBinary beside this
// executable when it is there, else this executable.
var agentPath = sync.OnceValues(func() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own executable: %w", err)
	}
	return agentBeside(self), nil
})

// agentBeside is AgentBinary in self's directory if it is an executable
// file there, else self.
func agentBeside(self string) string {
	p := filepath.Join(filepath.Dir(self), AgentBinary)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && unix.Access(p, unix.X_OK) == nil {
		return p
	}
	return self
}

// Start creates the namespaces, sends spec and waits until eth0 is made.
// On error nothing is left: the agent is killed and reaped.
func Start(spec wire.Spec, opts Options) (*Sandbox, error) {
	if len(spec.LoopbackTCP) > wire.MaxLoopbackTCP {
		return nil, fmt.Errorf("a sandbox listens on at most %d loopback ports, not %d", wire.MaxLoopbackTCP, len(spec.LoopbackTCP))
	}
	var idmap *idMapping
	if opts.AutoUserNS {
		m, err := subordinateMapping()
		if err != nil {
			return nil, err
		}
		idmap = m
	}
	conn, childEnd, err := wire.SocketPair("sandbox-control")
	if err != nil {
		return nil, err
	}
	defer childEnd.Close()

	agentBin, err := agentPath()
	if err != nil {
		conn.Close()
		return nil, err
	}
	cmd := exec.Command(agentBin)
	cmd.Args = []string{"netns-run-sandbox"}
	stage := wire.StageAgent
	if idmap != nil {
		stage = wire.StageRemap
	}
	// One processor: the agent only waits and spawns, and each P holds
	// its own cached spans and threads (docs/ARCHITECTURE.md, Measured
	// facts: Memory of an idle member). The command's environment is the
	// spec's, so it does not inherit this.
	cmd.Env = wire.MergeEnv(os.Environ(), []string{"GOMAXPROCS=1", wire.AgentEnv + "=" + stage})
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	var tty *ptyRelay
	if opts.Tty {
		in := opts.Stdin
		if !opts.Interactive {
			in = nil
		}
		if tty, err = newPTYRelay(in, opts.Stdout); err != nil {
			conn.Close()
			return nil, err
		}
		// The agent passes its stdio on to the command.
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty.slave, tty.slave, tty.slave
	}
	cmd.ExtraFiles = []*os.File{childEnd}
	attr := &syscall.SysProcAttr{
		// The agent is pid 1 of the new pid namespace: when it exits,
		// the kernel kills whatever is left in the sandbox.
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
	}
	if spec.HostNetwork {
		attr.Cloneflags &^= syscall.CLONE_NEWNET
	}
	if idmap == nil {
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		conn.Close()
		if tty != nil {
			tty.close()
		}
		return nil, userNSError(err)
	}
	if tty != nil {
		tty.slave.Close() // the agent has it: the output copy ends when the last holder closes it
	}
	sb := &Sandbox{
		cmd: cmd, conn: conn, link: tap.Link{FD: -1}, tty: tty,
		exited: make(chan struct{}), readerDone: make(chan struct{}),
		execs: map[uint64]*ExecProcess{}, attaches: map[*attachSession]struct{}{},
	}
	if opts.WhileStarting != nil {
		if err := opts.WhileStarting(&spec); err != nil {
			sb.Kill()
			return nil, err
		}
	}
	if err := sb.handshake(spec, idmap); err != nil {
		sb.Kill()
		return nil, err
	}
	return sb, nil
}

func (sb *Sandbox) handshake(spec wire.Spec, idmap *idMapping) error {
	if idmap != nil {
		if err := idmap.apply(sb.cmd.Process.Pid); err != nil {
			return err
		}
		if err := wire.Send(sb.conn, wire.AgentMessage{Mapped: wire.Present}); err != nil {
			return err
		}
	}
	spec.Build = wire.Build()
	if err := wire.Send(sb.conn, wire.AgentMessage{Spec: &spec}); err != nil {
		return err
	}
	m, fds, err := wire.RecvAgent(sb.conn)
	if err != nil {
		return sb.agentFailure(err)
	}
	if m.Failed != nil {
		wire.CloseFDs(fds)
		return &Error{Msg: m.Failed.Error, Code: m.Failed.Code}
	}
	if m.Made == nil {
		wire.CloseFDs(fds)
		return errors.New("sandbox agent answered the spec with something else")
	}
	made := m.Made
	nLink := 0
	if made.Link != nil {
		nLink = 1
	}
	if (spec.Link != nil && made.Link == nil) || len(fds) != nLink+made.Listeners || made.Listeners < 0 {
		wire.CloseFDs(fds)
		return fmt.Errorf("sandbox agent sent %d descriptors for %d listeners and link %v", len(fds), made.Listeners, made.Link != nil)
	}
	if sb.listeners, err = loopbackListeners(fds[nLink:]); err != nil {
		wire.CloseFDs(fds[:nLink])
		return err
	}
	if made.Link != nil {
		sb.link = tap.Link{FD: fds[0], Mode: *made.Link}
	}
	sb.warnings = made.Warnings
	return nil
}

// agentFailure explains a control socket that broke before the agent
// reported anything: usually the agent died.
func (sb *Sandbox) agentFailure(err error) error {
	sb.conn.Close()
	sb.reap()
	<-sb.exited
	if sb.waitErr != nil {
		return fmt.Errorf("sandbox agent failed before eth0 was made: %v", sb.waitErr)
	}
	return fmt.Errorf("sandbox agent: %w", err)
}

// reap waits for the agent, once, whoever asks first (Wait, Kill).
func (sb *Sandbox) reap() {
	sb.reapOnce.Do(func() {
		go func() {
			sb.waitErr = sb.cmd.Wait()
			close(sb.exited)
		}()
	})
}

// Link is the descriptor that carries eth0's frames. The caller owns it.
func (sb *Sandbox) Link() tap.Link { return sb.link }

// LoopbackListeners are the listeners of wire.Spec.LoopbackTCP, made inside the
// sandbox (on 127.0.0.1, and on ::1 where it has IPv6). The caller owns them.
func (sb *Sandbox) LoopbackListeners() []net.Listener { return sb.listeners }

// Warnings are what the agent could not do but did not fail on.
func (sb *Sandbox) Warnings() []string { return sb.warnings }

// Pid is the agent's pid (in the caller's pid namespace; it is 1 in the
// sandbox's). Its namespaces are the sandbox's.
func (sb *Sandbox) Pid() int { return sb.cmd.Process.Pid }

// Run tells the agent to start the command, and starts the reader of the
// control socket.
func (sb *Sandbox) Run() error {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.running {
		return fmt.Errorf("sandbox: Run called twice")
	}
	if err := wire.Send(sb.conn, wire.AgentMessage{Start: wire.Present}); err != nil {
		return err
	}
	sb.running = true
	if sb.tty != nil {
		sb.tty.start()
	}
	go sb.read()
	return nil
}

// ResizeTerminal gives the command's pty (run -t) the client terminal's
// window size, which signals the command's foreground process group.
func (sb *Sandbox) ResizeTerminal() bool {
	if sb.tty == nil {
		return false
	}
	sb.tty.resize()
	return true
}

// read dispatches the agent's messages until the control socket ends, then
// fails the execs still waiting with ErrSandboxEnded.
func (sb *Sandbox) read() {
	defer close(sb.readerDone)
	for {
		m, fds, err := wire.NextAgentMessage(sb.conn)
		if err != nil {
			break
		}
		if m.LinkAdded != nil {
			sb.linkAdded(*m.LinkAdded, fds)
			continue
		}
		wire.CloseFDs(fds)
		sb.mu.Lock()
		switch {
		case m.ExecStarted != nil:
			if p := sb.execs[m.ExecStarted.ID]; p != nil {
				p.setStarted(m.ExecStarted.Pid)
			}
		case m.ExecExited != nil:
			s := m.ExecExited
			if p := sb.execs[s.ID]; p != nil {
				delete(sb.execs, s.ID)
				p.finish(s.Code, statusError(s))
			}
		case m.Failed != nil:
			sb.reported = &Error{Msg: m.Failed.Error, Code: m.Failed.Code}
		}
		sb.mu.Unlock()
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.ended = true
	for id, p := range sb.execs {
		delete(sb.execs, id)
		p.finish(wire.ExitKilled, ErrSandboxEnded)
	}
}

// Signal sends sig to the agent, which forwards it to the command (only:
// execs get their own through ExecProcess.Signal).
func (sb *Sandbox) Signal(sig os.Signal) error {
	return sb.cmd.Process.Signal(sig)
}

// Wait waits for the agent and returns the command's exit status. An error
// the agent reported on the socket before the command ran is returned as
// *Error. Attached clients are told the status by EndAttaches, not here.
// Execs still running when the command ends are killed with the sandbox;
// their Exec returns ErrSandboxEnded. Wait may run concurrently with Exec
// and Kill; it closes the control socket.
func (sb *Sandbox) Wait() (int, error) {
	sb.reap()
	<-sb.exited
	sb.closeConn()
	if sb.tty != nil {
		sb.tty.drain(time.Second)
		sb.tty.close()
	}
	sb.mu.Lock()
	reported := sb.reported
	sb.mu.Unlock()
	if reported != nil {
		return reported.Code, reported
	}
	return exitStatus(sb.cmd.ProcessState, sb.waitErr)
}

// closeConn closes the control socket once the agent is gone: after the
// reader has taken the agent's last messages (the exits of the execs it
// killed), or a moment later if something else still holds its end.
func (sb *Sandbox) closeConn() {
	sb.mu.Lock()
	running := sb.running
	sb.mu.Unlock()
	if running {
		select {
		case <-sb.readerDone:
		case <-time.After(2 * time.Second):
		}
	}
	sb.conn.Close()
	if running {
		<-sb.readerDone
	}
}

// Kill ends the sandbox: it SIGKILLs the agent, pid 1 of the sandbox's pid
// namespace, and the kernel then kills every process in the sandbox (the
// command, what it left behind, the execs), and reaps the agent. It returns
// once they are all gone. Safe to call more than once and concurrently
// with Wait (which then returns 137). The link descriptor stays the
// caller's to close.
func (sb *Sandbox) Kill() {
	sb.cmd.Process.Kill()
	sb.reap()
	<-sb.exited
	sb.closeConn()
	if sb.tty != nil {
		sb.tty.close()
	}
}

func exitStatus(ps *os.ProcessState, err error) (int, error) {
	if ps == nil {
		return wire.ExitOwnError, fmt.Errorf("wait for sandbox: %w", err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ps.ExitCode(), nil
}

// userNSError turns a failed clone into advice: which setting forbids
// unprivileged user namespaces here.
func userNSError(err error) error {
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("start sandbox: %w", err)
	}
	read := func(path string) string {
		b, _ := os.ReadFile(path)
		return strings.TrimSpace(string(b))
	}
	switch {
	case read("/proc/sys/user/max_user_namespaces") == "0":
		return fmt.Errorf("user namespaces are disabled: sysctl user.max_user_namespaces is 0; set it to a positive number (e.g. sysctl -w user.max_user_namespaces=15000)")
	case read("/proc/sys/user/max_pid_namespaces") == "0":
		return fmt.Errorf("pid namespaces are disabled: sysctl user.max_pid_namespaces is 0; set it to a positive number (e.g. sysctl -w user.max_pid_namespaces=15000)")
	case read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
		return fmt.Errorf("unprivileged user namespaces are disabled: set sysctl kernel.unprivileged_userns_clone=1")
	case read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
		return fmt.Errorf("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): add an AppArmor profile that allows userns for netns-run, or set that sysctl to 0")
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("cannot create a user namespace: the limit user.max_user_namespaces is reached; raise it or end other sandboxes")
	}
	return fmt.Errorf("cannot create a user namespace (%v): check that unprivileged user namespaces are enabled", err)
}
