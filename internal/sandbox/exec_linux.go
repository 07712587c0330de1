package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/netns-run/netns-run/internal/wire"
)

// ExecProcess is a process that StartExec started in the sandbox.
type ExecProcess struct {
	sb      *Sandbox
	id      uint64
	started chan struct{} // closed when it runs, or when it never will
	done    chan struct{} // closed when it ended, or never started
	// Set before started (pid) or done (code, err) is closed.
	pid  int
	code int
	err  error
}

// setStarted and finish are called by the reader with sb.mu held.
func (p *ExecProcess) setStarted(pid int) {
	select {
	case <-p.started:
	default:
		p.pid = pid
		close(p.started)
	}
}

func (p *ExecProcess) finish(code int, err error) {
	p.code, p.err = code, err
	select {
	case <-p.started:
	default:
		close(p.started)
	}
	close(p.done)
}

// statusError is the error an execExited report implies: none for a
// process that ran and exited, ErrSandboxEnded for one killed with the
// sandbox, *Error for one that could not start.
func statusError(s *wire.ExecStatus) error {
	switch {
	case s.Stopped:
		return ErrSandboxEnded
	case s.Error != "":
		return &Error{Msg: s.Error, Code: s.Code}
	}
	return nil
}

// Pid is the process's pid in the sandbox's pid namespace.
func (p *ExecProcess) Pid() int { return p.pid }

// Done is closed when the process has ended (Wait then returns at once).
func (p *ExecProcess) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process (not to its children). A process that
// has ended is not an error.
func (p *ExecProcess) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("exec: unsupported signal %v", sig)
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	return wire.Send(p.sb.conn, wire.AgentMessage{Signal: &wire.ExecSignal{ID: p.id, Signal: int(s)}})
}

// Wait waits for the process and returns its exit status (128+N if a
// signal killed it). When ctx ends first, the process is killed (SIGKILL)
// and Wait returns its status with ctx's error. If the sandbox ends first,
// it returns wire.ExitKilled and ErrSandboxEnded.
func (p *ExecProcess) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.code, p.err
	case <-ctx.Done():
	}
	p.Signal(syscall.SIGKILL)
	<-p.done // the agent reports the kill, or the reader sees it gone
	if p.err != nil {
		return p.code, p.err
	}
	return p.code, ctx.Err()
}

// StartExec starts req in the running sandbox (between Run and the end of
// the command) with stdio as its stdin, stdout and stderr, and returns once
// it runs. The files stay the caller's: the agent gets duplicates, so the
// caller may close its own at once (and must, for a pipe's reader to see
// EOF when the process ends). An error is *Error (with status 126 or 127
// when the command cannot be run or found, as Docker), ErrNotRunning or
// ErrSandboxEnded. When ctx ends before the process is known to run,
// StartExec returns ctx's error and the process, should it start, is
// killed.
func (sb *Sandbox) StartExec(ctx context.Context, req ExecRequest, stdio [3]*os.File) (*ExecProcess, error) {
	for i, f := range stdio {
		if f == nil {
			return nil, fmt.Errorf("exec: stdio[%d] is nil", i)
		}
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return nil, &Error{Msg: "exec: no command given", Code: wire.ExitOwnError}
	}
	sb.mu.Lock()
	if !sb.running || sb.ended {
		sb.mu.Unlock()
		return nil, ErrNotRunning
	}
	sb.nextID++
	p := &ExecProcess{sb: sb, id: sb.nextID, started: make(chan struct{}), done: make(chan struct{})}
	sb.execs[p.id] = p
	sb.mu.Unlock()

	m := wire.AgentMessage{Exec: &wire.ExecSpec{ID: p.id, Argv: req.Argv, Env: req.Env, EnvSet: req.EnvSet, Dir: req.Dir, Tty: req.Tty, User: req.User}}
	if err := wire.SendFiles(sb.conn, m, stdio[:]); err != nil {
		sb.mu.Lock()
		if sb.execs[p.id] == p {
			delete(sb.execs, p.id)
		}
		sb.mu.Unlock()
		if errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return nil, ErrNotRunning
		}
		return nil, fmt.Errorf("exec: %w", err)
	}
	select {
	case <-p.started:
	case <-ctx.Done():
		go func() {
			<-p.started
			p.Signal(syscall.SIGKILL)
		}()
		return nil, ctx.Err()
	}
	select {
	case <-p.done:
		if p.pid == 0 { // never started
			return nil, p.err
		}
	default:
	}
	return p, nil
}

// Exec runs req in the running sandbox with stdio as its stdin, stdout and
// stderr and returns its exit status, as docker exec: StartExec, then
// Wait. The process shares every namespace of the sandbox (it sees its
// hostname, /etc/hosts, eth0 and processes). Several may run at once.
// ctx's end kills it. See StartExec for the files and the errors; the
// status that goes with an error is its Code for *Error, wire.ExitKilled for
// ErrSandboxEnded and wire.ExitOwnError otherwise.
func (sb *Sandbox) Exec(ctx context.Context, req ExecRequest, stdio [3]*os.File) (code int, err error) {
	p, err := sb.StartExec(ctx, req, stdio)
	if err != nil {
		return statusOf(err), err
	}
	return p.Wait(ctx)
}

// statusOf is the exit status that goes with an exec error.
func statusOf(err error) int {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, ErrSandboxEnded):
		return wire.ExitKilled
	}
	return wire.ExitOwnError
}
