package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

// The exec socket lets another process (netns-run exec NAME -- CMD) run a
// command in a running sandbox: ExecVia connects to the socket that its
// supervisor serves with ServeExec. Protocol, one JSON message per
// SOCK_SEQPACKET packet:
//
//	client -> {exec: {argv, env, dir, tty}} + 3 fds (stdin, stdout, stderr)
//	server <- {execStarted: {pid}}
//	client -> {signal: {signal: N}}        any number, while it runs
//	server <- {execExited: {code, error, stopped}}, then it closes
//
// The server answers {execExited: {code: 125, error}} to a request it
// cannot take, and kills the process (SIGKILL) if the client goes away
// before it ended.

// ListenExec listens on a new exec socket at path, mode 0600 (keep it in a
// 0700 directory such as $XDG_RUNTIME_DIR/netns-run: the mode is set just
// after bind). A stale socket nobody listens on is replaced. ServeExec
// closes the listener, which removes the file. A path longer than a unix
// socket address takes is bound through a descriptor of its directory,
// which ServeExec closes too.
func ListenExec(path string) (*net.UnixListener, error) {
	name, dirFD, err := wire.SocketAddr(path)
	if err != nil {
		return nil, err
	}
	addr := &net.UnixAddr{Name: name, Net: "unixpacket"}
	ln, err := net.ListenUnix("unixpacket", addr)
	if err != nil && errors.Is(err, unix.EADDRINUSE) {
		if c, derr := net.DialUnix("unixpacket", nil, addr); derr == nil {
			c.Close()
			err = fmt.Errorf("exec socket %s is in use by another sandbox", path)
		} else if errors.Is(derr, unix.ECONNREFUSED) {
			os.Remove(path)
			ln, err = net.ListenUnix("unixpacket", addr)
		}
	}
	if err == nil {
		if cerr := os.Chmod(path, 0o600); cerr != nil {
			ln.Close()
			err = cerr
		}
	}
	if err != nil {
		if dirFD >= 0 {
			unix.Close(dirFD)
		}
		return nil, fmt.Errorf("listen on exec socket: %w", err)
	}
	return ln, nil
}

// closeExecListener closes ln, which removes its socket file, then the
// directory descriptor it was bound through, if any.
func closeExecListener(ln *net.UnixListener) {
	ln.Close()
	if fd := wire.DirFDOf(ln.Addr().String()); fd >= 0 {
		unix.Close(fd)
	}
}

// ServeExec serves exec requests on ln (a "unixpacket" listener, as
// ListenExec makes) for sb until ctx ends or the sandbox's agent is reaped
// (after Wait or Kill), then closes ln, kills the execs it still serves
// and waits for its goroutines. Only clients of our own uid are served.
// Each connection is one exec, run with the client's descriptors as its
// stdio (see Sandbox.StartExec).
func ServeExec(ctx context.Context, ln *net.UnixListener, sb *Sandbox) error {
	defer closeExecListener(ln)
	if n := ln.Addr().Network(); n != "unixpacket" {
		return fmt.Errorf("exec socket: want a unixpacket listener, got %s", n)
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (the connections end with ctx), before closeExecListener
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-sb.exited:
			cancel()
		}
		ln.Close()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				cancel()
				return nil
			}
			// EMFILE and the like: wait a little rather than spin.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveExecConn(ctx, c, sb)
		}()
	}
}

// serveExecConn runs one client's exec.
func serveExecConn(ctx context.Context, c *net.UnixConn, sb *Sandbox) {
	defer c.Close()
	reply := func(s wire.ExecStatus) { wire.Send(c, wire.AgentMessage{ExecExited: &s}) }
	if wire.CheckPeer(c) != nil {
		return // another user: not a word
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, fds, err := wire.RecvAgent(c)
	if err != nil {
		wire.CloseFDs(fds)
		reply(wire.ExecStatus{Code: wire.ExitOwnError, Error: fmt.Sprintf("exec: bad request: %v", err)})
		return
	}
	c.SetReadDeadline(time.Time{})
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("exec-client-stdio-%d", i))
	}
	closeFiles := func() {
		for _, f := range files {
			f.Close()
		}
		files = nil
	}
	defer closeFiles()
	if m.Exec == nil || len(files) != 3 {
		reply(wire.ExecStatus{Code: wire.ExitOwnError, Error: fmt.Sprintf("exec: bad request: want {exec} with 3 descriptors, got %d", len(files))})
		return
	}
	req := ExecRequest{Argv: m.Exec.Argv, Env: m.Exec.Env, EnvSet: m.Exec.EnvSet, Dir: m.Exec.Dir, Tty: m.Exec.Tty, User: m.Exec.User}
	p, err := sb.StartExec(ctx, req, [3]*os.File{files[0], files[1], files[2]})
	closeFiles() // the process has its own copies: EOF must not wait for ours
	if err != nil {
		s := wire.ExecStatus{Code: statusOf(err), Error: err.Error()}
		if errors.Is(err, ErrSandboxEnded) {
			s.Stopped = true
		}
		reply(s)
		return
	}
	if err := wire.Send(c, wire.AgentMessage{ExecStarted: &wire.ExecStatus{Pid: p.Pid()}}); err != nil {
		p.Signal(syscall.SIGKILL) // the client is gone
	}

	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		for {
			m, fds, err := wire.NextAgentMessage(c)
			wire.CloseFDs(fds)
			if err != nil {
				return
			}
			if m.Signal != nil && m.Signal.Signal > 0 && m.Signal.Signal <= 64 {
				p.Signal(syscall.Signal(m.Signal.Signal))
			}
		}
	}()
	select {
	case <-p.Done():
	case <-clientGone:
		p.Signal(syscall.SIGKILL)
	case <-ctx.Done():
		p.Signal(syscall.SIGKILL)
	}
	<-p.Done()
	s := wire.ExecStatus{Code: p.code}
	if p.err != nil {
		s.Error = p.err.Error()
		s.Stopped = errors.Is(p.err, ErrSandboxEnded)
	}
	reply(s)
	c.Close()
	<-clientGone
}

// execClientSignals are passed from ExecVia's process to the exec, as
// docker exec does, so that ^C on `exec -i` reaches the command.
var execClientSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// ExecVia runs req in the sandbox whose exec socket is socketPath, with
// stdin, stdout and stderr as its stdio (sent as descriptors: the process
// reads and writes them directly), and returns its exit status. While it
// runs, SIGINT, SIGTERM and SIGHUP of the calling process are caught and
// passed to the process (they no longer end the caller).
//
// With req.Tty, the process gets a new pty instead, relayed to stdin and
// stdout (stderr is unused): stdin, if a terminal, is put in raw mode until
// ExecVia returns, and its window size follows (SIGWINCH).
//
// The error is nil when the process ran, whatever its status. Otherwise:
// *Error (126/127: it could not be run/found; 125: refused), ErrSandboxEnded
// with wire.ExitKilled (137) if the sandbox ended while it ran or the socket
// closed without a status, or another error with wire.ExitOwnError (125), e.g.
// no sandbox listens on socketPath.
func ExecVia(socketPath string, req ExecRequest, stdin, stdout, stderr *os.File) (code int, err error) {
	if stdin == nil || stdout == nil || stderr == nil {
		return wire.ExitOwnError, fmt.Errorf("exec: stdin, stdout and stderr must be set")
	}
	name, dirFD, err := wire.SocketAddr(socketPath)
	if err != nil {
		return wire.ExitOwnError, err
	}
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: name, Net: "unixpacket"})
	if dirFD >= 0 {
		unix.Close(dirFD)
	}
	if err != nil {
		return wire.ExitOwnError, fmt.Errorf("connect to the exec socket %s (is the sandbox running?): %w", socketPath, err)
	}
	defer conn.Close()

	sigs := make(chan os.Signal, 8)
	notified := execClientSignals
	if req.Tty {
		notified = append(notified[:len(notified):len(notified)], syscall.SIGWINCH)
	}
	signal.Notify(sigs, notified...)
	defer signal.Stop(sigs)

	stdio := []*os.File{stdin, stdout, stderr}
	var tty *ptyRelay
	if req.Tty {
		tty, err = newPTYRelay(stdin, stdout)
		if err != nil {
			return wire.ExitOwnError, err
		}
		defer tty.close()
		stdio = []*os.File{tty.slave, tty.slave, tty.slave}
	}
	m := wire.AgentMessage{Exec: &wire.ExecSpec{Argv: req.Argv, Env: req.Env, EnvSet: req.EnvSet, Dir: req.Dir, Tty: req.Tty, User: req.User}}
	err = wire.SendFiles(conn, m, stdio)
	if tty != nil {
		tty.slave.Close() // the message holds its own reference
		tty.start()
	}
	if err != nil {
		return wire.ExitOwnError, fmt.Errorf("exec: %w", err)
	}

	replies := make(chan wire.AgentMessage)
	stopped := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(replies)
		for {
			m, fds, err := wire.NextAgentMessage(conn)
			wire.CloseFDs(fds)
			if err != nil {
				return
			}
			select {
			case replies <- m:
			case <-stopped:
				return
			}
		}
	}()
	defer func() {
		close(stopped)
		conn.Close()
		<-readerDone
	}()

	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGWINCH {
				tty.resize()
				continue
			}
			if s, ok := sig.(syscall.Signal); ok {
				wire.Send(conn, wire.AgentMessage{Signal: &wire.ExecSignal{Signal: int(s)}})
			}
		case m, ok := <-replies:
			if !ok {
				return wire.ExitKilled, fmt.Errorf("%w (the exec socket closed without its status)", ErrSandboxEnded)
			}
			if s := m.ExecExited; s != nil {
				if tty != nil {
					tty.drain(2 * time.Second)
				}
				return s.Code, statusError(s)
			}
		}
	}
}
