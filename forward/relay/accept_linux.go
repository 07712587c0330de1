package relay

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// acceptor is a listening socket the event loop accepts on itself.
type acceptor struct {
	mu       sync.Mutex // held while accepting, so that stop waits for it
	fd       int        // the loop's duplicate of the listener's socket; -1 once stopped
	accepted func(fd int, peer netip.AddrPort)
	rearm    func() // has the epoll report the listener again if clients wait
}

// acceptRetry is how long a shortage of descriptors (or of memory) makes
// the waiting clients wait before the next try, as Go's own accept loops
// back off.
const acceptRetry = 10 * time.Millisecond

// AcceptOnLoop has the event loop accept ln's clients itself, on its own
// thread, and hand each to accepted there, which must not block: fd is
// the client's socket (non-blocking, close-on-exec), accepted's to close
// or to relay (NewSocket, TCPThen, which takes it on the loop at once).
// So a client costs no wakeup of a goroutine, and none of the calls Go's
// Accept makes (the poller's registration, the addresses, the no-delay
// and keep-alive settings). stop ends the accepting, waiting for one in
// progress, and closes the loop's duplicate of ln's socket; ln stays the
// caller's to close, after stop. An error: the loop cannot take ln.
func AcceptOnLoop(ln *net.TCPListener, accepted func(fd int, peer netip.AddrPort)) (stop func(), err error) {
	l, err := sharedLoop()
	if err != nil {
		return nil, err
	}
	fd, err := dupSocket(ln)
	if err != nil {
		return nil, err
	}
	a := &acceptor{fd: fd, accepted: accepted}
	l.mu.Lock()
	l.nextID++
	id := l.nextID
	a.rearm = func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.fd >= 0 {
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, a.fd, eventFor(id, 0, unix.EPOLLIN|unix.EPOLLET))
		}
	}
	l.acceptors[id] = a // the loop finds it complete: the table's lock orders it
	l.mu.Unlock()
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, eventFor(id, 0, unix.EPOLLIN|unix.EPOLLET)); err != nil {
		l.mu.Lock()
		delete(l.acceptors, id)
		l.mu.Unlock()
		unix.Close(fd)
		return nil, fmt.Errorf("relay: accept on the event loop: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.acceptors, id)
			l.mu.Unlock()
			a.mu.Lock()
			defer a.mu.Unlock()
			// Out of the epoll first: the registration would outlive
			// this descriptor while ln's own is open.
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, a.fd, nil)
			unix.Close(a.fd)
			a.fd = -1
		})
	}, nil
}

// accept takes every client waiting (the registration is edge-triggered)
// and hands each over. Past a shortage of descriptors or memory the rest
// wait in the backlog: no new edge would come for them until another
// client connects, so the registration is renewed after acceptRetry,
// which reports them again.
func (a *acceptor) accept() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sa unix.RawSockaddrAny
	for a.fd >= 0 {
		fd, err := accept4(a.fd, &sa)
		switch err {
		case nil:
			a.accepted(fd, peerOf(&sa))
		case unix.EINTR, unix.ECONNABORTED:
		case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
			time.AfterFunc(acceptRetry, a.rearm)
			return
		default: // EAGAIN: all taken
			return
		}
	}
}

// accept4 is accept4(2) itself: x/sys's asks every IPv4 and IPv6 client's
// socket its protocol as well (for L2TP), a call per connection.
func accept4(fd int, sa *unix.RawSockaddrAny) (int, error) {
	n := uint32(unix.SizeofSockaddrAny)
	nfd, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(nfd), nil
}

func peerOf(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), portOf(in.Port))
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(in.Addr), portOf(in.Port))
	}
	return netip.AddrPort{}
}

// portOf reads a port in network byte order.
func portOf(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
