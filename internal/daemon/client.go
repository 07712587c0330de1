package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
)

// startTimeout bounds how long a client waits for a daemon it started.
const startTimeout = 5 * time.Second

// dial connects to the daemon of runtimeDir, starting one if none runs.
func dial(runtimeDir string) (*net.UnixConn, error) {
	path := filepath.Join(runtimeDir, SocketName)
	if c, err := wire.Dial(path); err == nil {
		return c, nil
	}
	if err := start(runtimeDir); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := wire.Dial(path)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the network daemon did not start (see %s): %w", filepath.Join(runtimeDir, "daemon.log"), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// start launches `netns-run daemon` in its own session, logging to the
// runtime dir; it is reaped by this process if it ends first, and by init
// otherwise.
func start(runtimeDir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(runtimeDir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(self, "daemon")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the network daemon: %w", err)
	}
	go cmd.Wait()
	return nil
}

// Session is a member's place on a network: it lasts as long as the
// connection does.
type Session struct {
	c      *net.UnixConn
	Joined wire.Joined
}

// JoinNetwork asks the daemon for a place on j.Network.
func JoinNetwork(runtimeDir string, j wire.Join) (*Session, error) {
	return open(runtimeDir, wire.Hello{Join: &j})
}

// HoldLease asks the daemon for an address on l.Network, a kernel macvlan
// network, held until the session ends (Session.Joined.IP).
func HoldLease(runtimeDir string, l wire.Lease) (*Session, error) {
	return open(runtimeDir, wire.Hello{Lease: &l})
}

// open starts a session with hello and takes the daemon's Joined.
func open(runtimeDir string, hello wire.Hello) (*Session, error) {
	c, err := dial(runtimeDir)
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
