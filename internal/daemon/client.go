package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
)

// startTimeout bounds how long a client waits for a daemon it started.
const startTimeout = 5 * time.Second

// startPoll is how often a client that started a daemon tries its socket
// when the daemon did not say it listens: another daemon, which won the
// lock, is starting.
const startPoll = 2 * time.Millisecond

// dial connects to the daemon of runtimeDir, starting one if none runs.
func dial(runtimeDir string) (*net.UnixConn, error) {
	if c, err := wire.Dial(filepath.Join(runtimeDir, SocketName)); err == nil {
		return c, nil
	}
	ready, err := start(runtimeDir)
	if err != nil {
		return nil, err
	}
	return await(runtimeDir, ready, time.Now().Add(startTimeout))
}

// await connects to the daemon started with ready (start) once it
// listens, and closes ready.
func await(runtimeDir string, ready *os.File, deadline time.Time) (*net.UnixConn, error) {
	awaitReady(ready, deadline)
	ready.Close()
	for {
		c, err := wire.Dial(filepath.Join(runtimeDir, SocketName))
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the network daemon did not start (see %s): %w", filepath.Join(runtimeDir, "daemon.log"), err)
		}
		time.Sleep(startPoll)
	}
}

// Reaching is the daemon of a runtime dir on its way: started early when
// none runs, so that its ~10 ms start overlaps the caller's other work (a
// sandbox's agent starting). It connects only to join: a connection that
// sent nothing yet would not keep a daemon in its idle grace from exiting.
type Reaching struct {
	runtimeDir string
	ready      *os.File // the pipe of the daemon started here, or nil
	deadline   time.Time
	err        error
}

// Reach starts the daemon of runtimeDir unless its socket is there (a
// stale one is found out at the join, which then starts a daemon), and
// returns at once.
func Reach(runtimeDir string) *Reaching {
	r := &Reaching{runtimeDir: runtimeDir}
	if _, err := os.Stat(filepath.Join(runtimeDir, SocketName)); err != nil {
		r.deadline = time.Now().Add(startTimeout)
		r.ready, r.err = start(runtimeDir)
	}
	return r
}

// JoinNetwork asks the daemon reached for a place on j.Network.
func (r *Reaching) JoinNetwork(j wire.Join) (*Session, error) {
	if r.err != nil {
		return nil, r.err
	}
	ready := r.ready
	r.ready = nil
	return open(func() (*net.UnixConn, error) {
		if ready == nil {
			return dial(r.runtimeDir)
		}
		return await(r.runtimeDir, ready, r.deadline)
	}, wire.Hello{Join: &j})
}

// Close lets go of a daemon started but never joined (it exits when idle).
func (r *Reaching) Close() {
	if r.ready != nil {
		r.ready.Close()
		r.ready = nil
	}
}

// start launches `netns-run daemon` in its own session, logging to the
// runtime dir, and returns the pipe on which it says that it listens
// (readyEnv); it is reaped by this process if it ends first, and by init
// otherwise.
func start(runtimeDir string) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(runtimeDir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start the network daemon: %w", err)
	}
	defer w.Close() // the daemon has its own copy: EOF here once it exits
	cmd := exec.Command(self, "daemon")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w} // readyFD
	cmd.Env = append(os.Environ(), readyEnv+"="+strconv.Itoa(readyFD))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("start the network daemon: %w", err)
	}
	go cmd.Wait()
	return r, nil
}

// Session is a member's place on a network: it lasts as long as the
// connection does.
type Session struct {
	c      *net.UnixConn
	Joined wire.Joined
}

// JoinNetwork asks the daemon for a place on j.Network.
func JoinNetwork(runtimeDir string, j wire.Join) (*Session, error) {
	return open(func() (*net.UnixConn, error) { return dial(runtimeDir) }, wire.Hello{Join: &j})
}

// HoldLease asks the daemon for an address on l.Network, a kernel macvlan
// network, held until the session ends (Session.Joined.IP).
func HoldLease(runtimeDir string, l wire.Lease) (*Session, error) {
	return open(func() (*net.UnixConn, error) { return dial(runtimeDir) }, wire.Hello{Lease: &l})
}

// open connects, starts a session with hello and takes the daemon's
// Joined.
func open(connect func() (*net.UnixConn, error), hello wire.Hello) (*Session, error) {
	c, err := connect()
	if err != nil {
		return nil, err
	}
	if err := wire.Send(c, hello); err != nil {
		c.Close()
		return nil, err
	}
	var joined wire.Joined
	if _, err := wire.Recv(c, &joined); err != nil {
		c.Close()
		return nil, fmt.Errorf("network daemon: %w", err)
	}
	if joined.Error != "" {
		c.Close()
		return nil, errors.New(joined.Error)
	}
	return &Session{c: c, Joined: joined}, nil
}

// Attach hands the member's eth0 descriptor to the daemon (which gets its
// own copy; fd stays the caller's).
func (s *Session) Attach(fd int) (wire.Reply, error) {
	return s.roundTrip(wire.Attach{}, fd)
}

// SendDialChannel hands the daemon a dial channel into the member's
// sandbox (sandbox.OpenDialChannel; the daemon gets its own copy, f stays
// the caller's), for the loopback fast path of its published ports; nil
// tells it that none will come. Call it before Wait, which would take its
// reply.
func (s *Session) SendDialChannel(f *os.File) error {
	var fds []int
	if f != nil {
		fds = append(fds, int(f.Fd()))
	}
	if _, err := s.roundTrip(wire.Request{DialChannel: &struct{}{}}, fds...); err != nil {
		return fmt.Errorf("send the dial channel: %w", err)
	}
	return nil
}

// roundTrip sends one message of the session and returns the daemon's
// Reply, whose Error comes back as an error.
func (s *Session) roundTrip(msg any, fds ...int) (wire.Reply, error) {
	if err := wire.Send(s.c, msg, fds...); err != nil {
		return wire.Reply{}, err
	}
	var r wire.Reply
	if _, err := wire.Recv(s.c, &r); err != nil {
		return r, fmt.Errorf("network daemon: %w", err)
	}
	if r.Error != "" {
		return r, errors.New(r.Error)
	}
	return r, nil
}

// Wait blocks until the daemon ends the session (it died) or Close.
func (s *Session) Wait() error {
	var r wire.Reply
	for {
		fds, err := wire.Recv(s.c, &r)
		wire.CloseFDs(fds)
		if err != nil {
			return err
		}
	}
}

// Close leaves the network.
func (s *Session) Close() { s.c.Close() }

// Leave asks the daemon to let the member go, without closing: the daemon
// releases the member (its switch port and eth descriptor included) and
// then ends the session, which ends Wait. Close still follows.
func (s *Session) Leave() error { return s.c.CloseWrite() }

// ChangePorts publishes or withdraws ports of a running member.
func ChangePorts(runtimeDir string, r wire.Request) (wire.Reply, error) {
	c, err := wire.Dial(filepath.Join(runtimeDir, SocketName))
	if err != nil {
		return wire.Reply{}, fmt.Errorf("no network daemon runs, so %s is not on a shared network: %w", r.SandboxID, err)
	}
	defer c.Close()
	var rep wire.Reply
	if err := wire.Exchange(c, wire.Hello{Request: &r}, &rep); err != nil {
		return rep, fmt.Errorf("network daemon: %w", err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
