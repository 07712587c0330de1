package relay

import (
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is a connected TCP socket kept out of Go's poller, a
// DetachedSocket: the event loop takes its descriptor as it is (TakeFD),
// which spares a relayed connection the calls that making it a
// *net.TCPConn costs (registering it with the poller and removing it
// again, duplicating it, reading back its addresses and type, the
// keep-alive and no-delay settings). The sockets internal/dialchan makes
// inside a sandbox, and the clients the loop accepts itself
// (AcceptOnLoop), are such. Used as a net.Conn it becomes a *net.TCPConn
// on first use.
type Socket struct {
	mu   sync.Mutex
	fd   int      // -1 once taken, converted or closed
	conn net.Conn // once converted
	err  error    // the conversion's
}

// NewSocket makes fd (non-blocking, connected) a Socket, which owns it.
func NewSocket(fd int) *Socket { return &Socket{fd: fd} }

// TakeFD hands the descriptor over, and with it the socket: false once
// the socket has been used as a net.Conn or closed.
func (s *Socket) TakeFD() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil || s.fd < 0 {
		return -1, false
	}
	fd := s.fd
	s.fd = -1
	return fd, true
}

// Conn is the socket as a *net.TCPConn, made on first use; the Socket
// then stands for it.
func (s *Socket) Conn() (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil && s.err == nil {
		if s.fd < 0 {
			s.err = net.ErrClosed
		} else {
			f := os.NewFile(uintptr(s.fd), "socket")
			s.conn, s.err = net.FileConn(f) // a duplicate, in the poller
			f.Close()
			s.fd = -1
		}
	}
	return s.conn, s.err
}

func (s *Socket) Read(b []byte) (int, error) {
	c, err := s.Conn()
	if err != nil {
		return 0, err
	}
	return c.Read(b)
}

func (s *Socket) Write(b []byte) (int, error) {
	c, err := s.Conn()
	if err != nil {
		return 0, err
	}
	return c.Write(b)
}

// CloseWrite ends the socket's sending side (a half-close).
func (s *Socket) CloseWrite() error {
	c, err := s.Conn()
	if err != nil {
		return err
	}
	return c.(*net.TCPConn).CloseWrite()
}

func (s *Socket) Close() error {
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

func (s *Socket) LocalAddr() net.Addr  { return s.addr((net.Conn).LocalAddr) }
func (s *Socket) RemoteAddr() net.Addr { return s.addr((net.Conn).RemoteAddr) }

func (s *Socket) addr(of func(net.Conn) net.Addr) net.Addr {
	c, err := s.Conn()
	if err != nil {
		return &net.TCPAddr{}
	}
	return of(c)
}

func (s *Socket) SetDeadline(t time.Time) error {
	return s.deadline(t, (net.Conn).SetDeadline)
}

func (s *Socket) SetReadDeadline(t time.Time) error {
	return s.deadline(t, (net.Conn).SetReadDeadline)
}

func (s *Socket) SetWriteDeadline(t time.Time) error {
	return s.deadline(t, (net.Conn).SetWriteDeadline)
}

func (s *Socket) deadline(t time.Time, set func(net.Conn, time.Time) error) error {
	c, err := s.Conn()
	if err != nil {
		return err
	}
	return set(c, t)
}
