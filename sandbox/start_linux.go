package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"

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
}

// Sandbox is a started agent whose eth0 exists; Run lets its command go.
type Sandbox struct {
	cmd      *exec.Cmd
	conn     *net.UnixConn
	link     tap.Link
	warnings []string
}

// Start creates the namespaces, sends spec and waits until eth0 is made.
// On error nothing is left: the agent is killed and reaped.
func Start(spec Spec, opts Options) (*Sandbox, error) {
	var idmap *idMapping
	if opts.AutoUserNS {
		m, err := subordinateMapping()
		if err != nil {
			return nil, err
		}
		idmap = m
	}
	conn, childEnd, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer childEnd.Close()

	self, err := os.Executable()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Args = []string{"netns-run-sandbox"}
	stage := stageAgent
	if idmap != nil {
		stage = stageRemap
	}
	cmd.Env = append(os.Environ(), childEnv+"="+stage)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	cmd.ExtraFiles = []*os.File{childEnd}
	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if idmap == nil {
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, userNSError(err)
	}
	sb := &Sandbox{cmd: cmd, conn: conn, link: tap.Link{FD: -1}}
	if err := sb.handshake(spec, idmap); err != nil {
		sb.Kill()
		return nil, err
	}
	return sb, nil
}

func (sb *Sandbox) handshake(spec Spec, idmap *idMapping) error {
	if idmap != nil {
		if err := idmap.apply(sb.cmd.Process.Pid); err != nil {
			return err
		}
		if err := send(sb.conn, message{Mapped: true}, -1); err != nil {
			return err
		}
	}
	if err := send(sb.conn, message{Spec: &spec}, -1); err != nil {
		return err
	}
	m, fd, err := recv(sb.conn)
	if err != nil {
		return sb.agentFailure(err)
	}
	if m.Error != "" {
		return &Error{Msg: m.Error, Code: m.Code}
	}
	if m.Link == nil || fd < 0 {
		if fd >= 0 {
			unix.Close(fd)
		}
		return fmt.Errorf("sandbox agent sent no link")
	}
	sb.link = tap.Link{FD: fd, Mode: *m.Link}
	sb.warnings = m.Warnings
	return nil
}

// agentFailure explains a control socket that broke before the agent
// reported anything: usually the agent died.
func (sb *Sandbox) agentFailure(err error) error {
	sb.conn.Close()
	if werr := sb.cmd.Wait(); werr != nil {
		return fmt.Errorf("sandbox agent failed before eth0 was made: %v", werr)
	}
	return fmt.Errorf("sandbox agent: %w", err)
}

// Link is the descriptor that carries eth0's frames. The caller owns it.
func (sb *Sandbox) Link() tap.Link { return sb.link }

// Warnings are what the agent could not do but did not fail on.
func (sb *Sandbox) Warnings() []string { return sb.warnings }

// Pid is the agent's pid; its namespaces are the sandbox's.
func (sb *Sandbox) Pid() int { return sb.cmd.Process.Pid }

// Run tells the agent to start the command.
func (sb *Sandbox) Run() error {
	return send(sb.conn, message{Start: true}, -1)
}

// Signal sends sig to the agent, which forwards it to the command.
func (sb *Sandbox) Signal(sig os.Signal) error {
	return sb.cmd.Process.Signal(sig)
}

// Wait waits for the agent and returns the command's exit status. An error
// the agent reported on the socket before the command ran is returned as
// *Error.
func (sb *Sandbox) Wait() (int, error) {
	defer sb.conn.Close()
	reported := make(chan *Error, 1)
	go func() {
		m, fd, err := recv(sb.conn)
		if fd >= 0 {
			unix.Close(fd)
		}
		if err == nil && m.Error != "" {
			reported <- &Error{Msg: m.Error, Code: m.Code}
		}
		close(reported)
	}()
	err := sb.cmd.Wait()
	sb.conn.Close()
	if rerr := <-reported; rerr != nil {
		return rerr.Code, rerr
	}
	return exitStatus(sb.cmd.ProcessState, err)
}

// Kill ends the agent (and so the command, through its death signal) and
// reaps it. The link descriptor stays the caller's to close.
func (sb *Sandbox) Kill() {
	sb.cmd.Process.Kill()
	sb.conn.Close()
	sb.cmd.Wait()
}

func exitStatus(ps *os.ProcessState, err error) (int, error) {
	if ps == nil {
		return ExitOwnError, fmt.Errorf("wait for sandbox: %w", err)
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
	case read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
		return fmt.Errorf("unprivileged user namespaces are disabled: set sysctl kernel.unprivileged_userns_clone=1")
	case read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
		return fmt.Errorf("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1): add an AppArmor profile that allows userns for netns-run, or set that sysctl to 0")
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("cannot create a user namespace: the limit user.max_user_namespaces is reached; raise it or end other sandboxes")
	}
	return fmt.Errorf("cannot create a user namespace (%v): check that unprivileged user namespaces are enabled", err)
}
