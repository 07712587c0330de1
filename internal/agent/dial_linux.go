package agent

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

// Sockets made inside the sandbox: the loopback fast path of published
// ports (internal/dialchan dials with them). The agent makes them: the
// supervisor cannot enter the sandbox's network namespace (that needs
// CAP_SYS_ADMIN in its own user namespace too). They travel on a dial
// channel of their own, a SOCK_SEQPACKET socketpair whose one end the
// supervisor hands the agent once, on the control socket
// (a dial_channel message with 1 fd), so that dials neither queue behind exec
// traffic nor need a reply on the control socket, and so that the channel
// can be handed to another process (the daemon of a shared network) which
// then dials with no hop through the supervisor. The frames are
// internal/wire's.
//
// Dial requests are pipelined: the agent dials each in a goroutine of its
// own and replies in whatever order the dials end. It tries the addresses
// in order and moves on only when one refuses. A refusal comes back as
// ECONNREFUSED, at once (on a loopback the RST is immediate), so the host
// side can close its client as fast as the gVisor path does. (The proto
// byte leaves room for UDP; a UDP flow through a socket made inside
// measured no faster than through gVisor, so there is none.)

// agentDialTimeout bounds a dial inside (a loopback dial that is not
// answered at once has a full accept queue and SYN retries ahead).
const agentDialTimeout = 5 * time.Second

// serveDialChannel answers dial requests on fd (the agent's end of a dial
// channel) until the supervisor's end is closed. Each dial runs in a
// goroutine of its own; replies are written as the dials end.
func serveDialChannel(fd int) {
	f := os.NewFile(uintptr(fd), "sandbox-dial-channel")
	conn, err := wire.FileConn(f)
	f.Close()
	if err != nil {
		return
	}
	defer conn.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	buf := make([]byte, wire.MaxDialRequest+1)
	for {
		n, err := conn.Read(buf)
		if err != nil || n == 0 {
			return
		}
		req, err := wire.DecodeDialRequest(buf[:n])
		switch {
		case err != nil:
			if n >= 8 {
				replyDial(conn, wire.DialReply{ID: req.ID, Errno: unix.EINVAL}, nil)
			}
		case req.Pool > 0:
			makeSockets(conn, req)
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				dialInside(conn, req)
			}()
		}
	}
}

// makeSockets replies with req.Pool unconnected, nonblocking AF_INET TCP
// sockets of the sandbox's network namespace.
func makeSockets(conn *net.UnixConn, req wire.DialRequest) {
	fds := make([]int, 0, req.Pool)
	for range req.Pool {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			break
		}
		fds = append(fds, fd)
	}
	if len(fds) == 0 {
		replyDial(conn, wire.DialReply{ID: req.ID, Errno: unix.EMFILE}, nil)
		return
	}
	replyDial(conn, wire.DialReply{ID: req.ID}, fds)
	wire.CloseFDs(fds)
}

// loopbackSource is where a dial to a non-loopback address (the member's
// own) comes from, so that the server sees a loopback client of a published
// port as 127.0.0.1 whichever address it is bound to.
var loopbackSource = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}

// dialInside connects to the first address that does not refuse.
func dialInside(conn *net.UnixConn, req wire.DialRequest) {
	var errno syscall.Errno
	for i, a := range req.Addrs {
		d := net.Dialer{Timeout: agentDialTimeout}
		if a.Is4() && !a.IsLoopback() {
			d.LocalAddr = loopbackSource
		}
		c, err := d.Dial("tcp", netip.AddrPortFrom(a, req.Port).String())
		if err == nil {
			sendConn(conn, wire.DialReply{ID: req.ID, Index: i}, c.(*net.TCPConn))
			c.Close()
			return
		}
		errno = errnoOf(err)
		if errno != unix.ECONNREFUSED {
			replyDial(conn, wire.DialReply{ID: req.ID, Errno: errno, Index: i}, nil)
			return
		}
	}
	replyDial(conn, wire.DialReply{ID: req.ID, Errno: errno, Index: len(req.Addrs) - 1}, nil)
}

// sendConn replies with c's descriptor (the kernel passes a duplicate).
func sendConn(conn *net.UnixConn, r wire.DialReply, c syscall.Conn) {
	rc, err := c.SyscallConn()
	if err != nil {
		r.Errno = unix.EBADF
		replyDial(conn, r, nil)
		return
	}
	if cerr := rc.Control(func(fd uintptr) { replyDial(conn, r, []int{int(fd)}) }); cerr != nil {
		r.Errno = unix.EBADF
		replyDial(conn, r, nil)
	}
}

func replyDial(conn *net.UnixConn, r wire.DialReply, fds []int) {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	conn.WriteMsgUnix(r.Encode(), oob, nil) // the supervisor gone: nothing to do
}

// errnoOf is the errno behind a dial error; ETIMEDOUT for a timeout, EIO
// when there is none.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return unix.ETIMEDOUT
	}
	return unix.EIO
}
