package dialchan

import (
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// socket is a connected socket made inside the sandbox, kept out of Go's
// poller: a relay's event loop takes its descriptor as it is (TakeFD),
// which spares a published port's connection the sixteen calls that
// making it a *net.TCPConn costs (registering it with the poller twice,
// duplicating it, reading back its addresses and type, keep-alive and
// no-delay settings a socket on the sandbox's loopback does not need).
// Used as a net.Conn it becomes a *net.TCPConn on first use.
type socket struct {
	mu   sync.Mutex
	fd   int      // -1 once taken, converted or closed
	conn net.Conn // once converted
	err  error    // the conversion's
}

func newSocket(fd int) *socket { return &socket{fd: fd} }

// TakeFD hands the descriptor over, and with it the socket: false once
// the socket has been used as a net.Conn or closed.
func (s *socket) TakeFD() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil || s.fd < 0 {
		return -1, false
	}
	fd := s.fd
	s.fd = -1
	return fd, true
}

// tcp is the socket as a *net.TCPConn, made on first use.
func (s *socket) tcp() (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil && s.err == nil {
		if s.fd < 0 {
			s.err = net.ErrClosed
		} else {
			f := os.NewFile(uintptr(s.fd), "inside-socket")
			s.conn, s.err = net.FileConn(f) // a duplicate, in the poller
			f.Close()
			s.fd = -1
		}
	}
	return s.conn, s.err
}

func (s *socket) Read(b []byte) (int, error) {
	c, err := s.tcp()
	if err != nil {
		return 0, err
	}
	return c.Read(b)
}

func (s *socket) Write(b []byte) (int, error) {
	c, err := s.tcp()
	if err != nil {
		return 0, err
	}
	return c.Write(b)
}

// CloseWrite ends the socket's sending side (a half-close).
func (s *socket) CloseWrite() error {
	c, err := s.tcp()
	if err != nil {
		return err
	}
	return c.(*net.TCPConn).CloseWrite()
}

func (s *socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return s.conn.Close()
	}
	if s.fd < 0 {
		return net.ErrClosed
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

func (s *socket) LocalAddr() net.Addr  { return s.addr((net.Conn).LocalAddr) }
func (s *socket) RemoteAddr() net.Addr { return s.addr((net.Conn).RemoteAddr) }

func (s *socket) addr(of func(net.Conn) net.Addr) net.Addr {
	c, err := s.tcp()
	if err != nil {
		return &net.TCPAddr{}
	}
	return of(c)
}

func (s *socket) SetDeadline(t time.Time) error {
	return s.deadline(t, (net.Conn).SetDeadline)
}

func (s *socket) SetReadDeadline(t time.Time) error {
	return s.deadline(t, (net.Conn).SetReadDeadline)
}

func (s *socket) SetWriteDeadline(t time.Time) error {
	return s.deadline(t, (net.Conn).SetWriteDeadline)
}

func (s *socket) deadline(t time.Time, set func(net.Conn, time.Time) error) error {
	c, err := s.tcp()
	if err != nil {
		return err
	}
	return set(c, t)
}
