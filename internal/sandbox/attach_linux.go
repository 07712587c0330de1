package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

// attachSession is one attached client (docker attach): its stdout gets
// the terminal's output, its stdin (if sent) is copied into the terminal
// until the detach keys are typed. A sandbox without a terminal gets
// status-only sessions: the client reads the log itself and waits here
// for the exit status.
type attachSession struct {
	sb       *Sandbox
	c        *net.UnixConn
	in, out  *os.File // nil without a terminal; in nil with --no-stdin
	esc      escaper
	wakeR    int
	wakeW    int
	endOnce  sync.Once
	over     atomic.Bool   // ended: what the client still sends is dropped
	finished chan struct{} // closed once its goroutines are done and its files closed
	wg       sync.WaitGroup
}

// ErrNotAttached: the request came without the descriptors it needs.
var ErrNotAttached = errors.New("attach: want stdout (and stdin, if asked) with the request")

// Attach serves an attach client on c, whose request req came with fds
// (stdin if req.Stdin, then stdout, for a sandbox with a terminal; none
// without one). It replies at once and returns a channel closed when the
// session is over: detached, the client gone, or the command ended (the
// client is told its status). The descriptors are the session's; on
// error they are closed.
func (sb *Sandbox) Attach(c *net.UnixConn, req wire.AttachRequest, fds []int) (<-chan struct{}, error) {
	s := &attachSession{sb: sb, c: c, esc: escaper{keys: req.DetachKeys}, wakeR: -1, wakeW: -1, finished: make(chan struct{})}
	if sb.tty == nil {
		wire.CloseFDs(fds)
	} else {
		want := 1
		if req.Stdin {
			want = 2
		}
		if len(fds) != want {
			wire.CloseFDs(fds)
			return nil, ErrNotAttached
		}
		if req.Stdin {
			s.in = os.NewFile(uintptr(fds[0]), "attach-stdin")
		}
		s.out = os.NewFile(uintptr(fds[len(fds)-1]), "attach-stdout")
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
			s.closeFiles()
			return nil, fmt.Errorf("attach: %w", err)
		}
		s.wakeR, s.wakeW = p[0], p[1]
	}
	sb.mu.Lock()
	if sb.attachEnded {
		sb.mu.Unlock()
		s.closeFiles()
		return nil, ErrNotRunning
	}
	sb.attaches[s] = struct{}{}
	sb.mu.Unlock()
	if err := wire.Send(c, wire.ControlReply{Attach: &wire.AttachStatus{Tty: sb.tty != nil}}); err != nil {
		s.end(nil)
		return s.finished, nil
	}
	if sb.tty != nil {
		sb.tty.addSink(s.out)
		if s.in != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				if copyInput(rawFD(s.in), s.wakeR, sb.tty.master, &s.esc, nil) == inputDetached {
					s.end(&wire.AttachStatus{Detached: true})
				}
			}()
		}
	}
	// finished waits for read too: the connection is closed once it is
	// done with it (end).
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.read()
	}()
	return s.finished, nil
}

// read takes the client's resizes and signals until it goes away.
func (s *attachSession) read() {
	for {
		var m wire.ControlRequest
		fds, err := wire.Recv(s.c, &m)
		wire.CloseFDs(fds)
		var bad *wire.DecodeError
		switch {
		case errors.As(err, &bad):
			continue
		case err != nil:
			s.end(nil) // gone, or hung up after its status
			s.c.Close()
			return
		case s.over.Load():
			continue // its files may be closed
		case m.Resize != nil && s.out != nil:
			s.sb.tty.resizeFrom(s.out)
		case m.Signal != nil && m.Signal.Signal > 0 && m.Signal.Signal <= 64:
			s.sb.Signal(syscall.Signal(m.Signal.Signal))
		}
	}
}

// end tells the client st (unless nil), stops the input copy and the
// output to it, and closes the connection; the files are closed once the
// goroutines let go of them. After a status it shuts only its sending side
// and read closes the rest when the client hangs up (or statusLinger
// later): a request of the client's still unread when the socket closes (a
// resize sent as the detach keys came) resets the connection, and a
// SOCK_SEQPACKET reader gets the reset before the status queued ahead of it
// (TestAttach failed so in one cold run of five). The session's finished
// channel, after which the control server closes the connection, waits
// for read.
func (s *attachSession) end(st *wire.AttachStatus) {
	s.endOnce.Do(func() {
		s.over.Store(true)
		s.sb.mu.Lock()
		delete(s.sb.attaches, s)
		s.sb.mu.Unlock()
		if s.out != nil {
			s.sb.tty.removeSink(s.out)
		}
		if s.wakeW >= 0 {
			unix.Write(s.wakeW, []byte{0})
		}
		if st != nil {
			wire.Send(s.c, wire.ControlReply{Attach: st})
			s.c.CloseWrite()
			s.c.SetReadDeadline(time.Now().Add(statusLinger))
		} else {
			s.c.Close() // ends read
		}
		go func() {
			s.wg.Wait()
			s.closeFiles()
			close(s.finished)
		}()
	})
}

// statusLinger is how long a session that told its client the status
// waits for the client to hang up before it closes the connection itself.
const statusLinger = 5 * time.Second

func (s *attachSession) closeFiles() {
	for _, f := range []*os.File{s.in, s.out} {
		if f != nil {
			f.Close()
		}
	}
	for _, fd := range []int{s.wakeR, s.wakeW} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// EndAttaches tells every attached client that the command ended with
// code, once, and waits a moment for them to hang up: later Attach calls
// fail. The supervisor calls it once the sandbox's record says it ended,
// so that a client that returns with the status (attach, as docker
// attach) finds it ended, not still running.
func (sb *Sandbox) EndAttaches(code int) {
	sb.mu.Lock()
	sb.attachEnded = true
	sessions := make([]*attachSession, 0, len(sb.attaches))
	for s := range sb.attaches {
		sessions = append(sessions, s)
	}
	sb.mu.Unlock()
	for _, s := range sessions {
		s.end(&wire.AttachStatus{Exited: true, Code: code})
	}
	// The supervisor exits next, which would close the connections
	// with whatever the clients sent last unread (end says why that
	// loses the status): a moment for them to hang up first.
	timeout := time.After(exitLinger)
	for _, s := range sessions {
		select {
		case <-s.finished:
		case <-timeout:
			return
		}
	}
}

// exitLinger bounds how long EndAttaches waits for the clients to hang up.
const exitLinger = time.Second

// AttachResult is how an attached client's session ended.
type AttachResult struct {
	Detached bool // the detach keys were typed: the sandbox goes on
	Code     int  // otherwise: the command's exit status
}

// AttachClient is the client's side of an attach connection.
type AttachClient struct {
	c     *net.UnixConn
	Tty   bool // attached to the command's terminal
	inFD  int
	saved *unix.Termios // stdin's settings before raw mode
}

// AttachTo sends req on c, a connection to a sandbox's control socket,
// with stdin (if req.Stdin) and stdout when tty says the sandbox has a
// terminal, and waits for the reply. With raw, stdin (a terminal) is put
// in raw mode first, until Close: keys then reach the command's terminal
// as typed, ^C included.
func AttachTo(c *net.UnixConn, req wire.AttachRequest, tty bool, stdin, stdout *os.File, raw bool) (*AttachClient, error) {
	a := &AttachClient{c: c, inFD: -1}
	var files []*os.File
	if tty {
		if req.Stdin {
			files = append(files, stdin)
		}
		files = append(files, stdout)
	}
	if raw && stdin != nil {
		a.inFD = rawFD(stdin)
		if t, err := unix.IoctlGetTermios(a.inFD, unix.TCGETS); err == nil {
			saved := *t
			makeRaw(t)
			if unix.IoctlSetTermios(a.inFD, unix.TCSETS, t) == nil {
				a.saved = &saved
			}
		}
	}
	if err := wire.SendFiles(c, wire.ControlRequest{Attach: &req}, files); err != nil {
		a.Close()
		return nil, fmt.Errorf("attach: %w", err)
	}
	var rep wire.ControlReply
	fds, err := wire.Recv(c, &rep)
	wire.CloseFDs(fds)
	switch {
	case err != nil:
		a.Close()
		return nil, fmt.Errorf("attach: the sandbox's supervisor: %w", err)
	case rep.Error != "":
		a.Close()
		return nil, errors.New(rep.Error)
	case rep.Attach == nil:
		a.Close()
		return nil, errors.New("attach: the sandbox's supervisor answered something else")
	}
	a.Tty = rep.Attach.Tty
	return a, nil
}

// Wait passes the window size on (SIGWINCH) and the signals in proxy to
// the command until the session ends, and says how.
func (a *AttachClient) Wait(proxy []os.Signal) (AttachResult, error) {
	sigs := make(chan os.Signal, 8)
	notified := proxy
	if a.Tty {
		notified = append(notified[:len(notified):len(notified)], syscall.SIGWINCH)
	}
	if len(notified) > 0 {
		signal.Notify(sigs, notified...)
		defer signal.Stop(sigs)
	}
	replies := make(chan wire.AttachStatus, 1)
	var lost error // why the connection ended without a status
	go func() {
		defer close(replies)
		for {
			var rep wire.ControlReply
			fds, err := wire.Recv(a.c, &rep)
			wire.CloseFDs(fds)
			var bad *wire.DecodeError
			if errors.As(err, &bad) {
				continue
			}
			if err != nil {
				lost = err
				return
			}
			if rep.Attach != nil && (rep.Attach.Detached || rep.Attach.Exited) {
				replies <- *rep.Attach
				return
			}
		}
	}()
	if a.Tty {
		wire.Send(a.c, wire.ControlRequest{Resize: wire.Present}) // the size may have changed since the request
	}
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGWINCH {
				wire.Send(a.c, wire.ControlRequest{Resize: wire.Present})
			} else if s, ok := sig.(syscall.Signal); ok {
				wire.Send(a.c, wire.ControlRequest{Signal: &wire.ExecSignal{Signal: int(s)}})
			}
		case st, ok := <-replies:
			if !ok {
				return AttachResult{Code: wire.ExitKilled}, fmt.Errorf("%w (the supervisor closed the attach connection without its status: %v)", ErrSandboxEnded, lost)
			}
			return AttachResult{Detached: st.Detached, Code: st.Code}, nil
		}
	}
}

// Close restores stdin's terminal settings and closes the connection.
func (a *AttachClient) Close() {
	if a.saved != nil {
		unix.IoctlSetTermios(a.inFD, unix.TCSETS, a.saved)
		a.saved = nil
	}
	a.c.Close()
}
