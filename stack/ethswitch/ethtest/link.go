// Package ethtest holds test doubles for the L2 path, kept as a package
// (as wireguard-go keeps tun/tuntest) so that the switch's tests and those
// of its users (stack/segment) play a member the same way: Link is a
// member's eth0 whose other end is a SOCK_SEQPACKET socketpair (one frame
// per message, as on a TAP), and the frame builders make what a sandbox's
// kernel would send.
package ethtest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Pair returns the two ends of a socketpair with room for a few 64 KiB
// frames: one for the switch (as a member's TAP descriptor), one for the
// test, closed when it ends.
func Pair(t testing.TB) (sw, member int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	return fds[0], fds[1]
}

// Link is the test's end of a member's eth0.
type Link struct {
	T   testing.TB
	MAC net.HardwareAddr
	IP  netip.Addr
	FD  int // the sandbox end
	buf []byte
}

// NewLink makes a member's link and returns it with the descriptor for
// the switch.
func NewLink(t testing.TB, mac net.HardwareAddr, ip netip.Addr) (*Link, int) {
	t.Helper()
	sw, m := Pair(t)
	return &Link{T: t, MAC: mac, IP: ip, FD: m, buf: make([]byte, 1<<17)}, sw
}

// Send writes one frame.
func (l *Link) Send(frame []byte) {
	l.T.Helper()
	if _, err := unix.Write(l.FD, frame); err != nil {
		l.T.Fatalf("member %s: write: %v", l.MAC, err)
	}
}

// Read returns the next frame within d: nil on timeout, io.EOF when the
// other end closed.
func (l *Link) Read(d time.Duration) ([]byte, error) {
	pfd := []unix.PollFd{{Fd: int32(l.FD), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			return nil, nil
		}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		break
	}
	n, err := unix.Read(l.FD, l.buf)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	return append([]byte(nil), l.buf[:n]...), nil
}

// Recv returns the next frame within d, or nil; an error fails the test.
func (l *Link) Recv(d time.Duration) []byte {
	l.T.Helper()
	f, err := l.Read(d)
	if err != nil {
		l.T.Fatalf("member %s: read: %v", l.MAC, err)
	}
	return f
}

// RecvMatch returns the first frame within d for which ok is true,
// skipping others (e.g. gVisor's IPv6 chatter).
func (l *Link) RecvMatch(d time.Duration, ok func([]byte) bool) []byte {
	l.T.Helper()
	deadline := time.Now().Add(d)
	for {
		f := l.Recv(time.Until(deadline))
		if f == nil || ok(f) {
			return f
		}
	}
}

// Expect fails the test unless the next frame, within 2 s, is want.
func (l *Link) Expect(want []byte) {
	l.T.Helper()
	got := l.Recv(2 * time.Second)
	if got == nil {
		l.T.Fatalf("member %s: no frame, want %d bytes", l.MAC, len(want))
	}
	if !bytes.Equal(got, want) {
		l.T.Fatalf("member %s: got a different frame (%d bytes, want %d)", l.MAC, len(got), len(want))
	}
}

// ExpectNothing fails the test if a frame comes within d.
func (l *Link) ExpectNothing(d time.Duration) {
	l.T.Helper()
	if f := l.Recv(d); f != nil {
		l.T.Fatalf("member %s: unexpected frame of %d bytes: %x", l.MAC, len(f), f[:min(len(f), 64)])
	}
}

// ExpectHangup fails the test unless the other end closes within 5 s.
func (l *Link) ExpectHangup() {
	l.T.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f, err := l.Read(time.Until(deadline))
		if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
			return
		}
		if err != nil {
			l.T.Fatalf("member %s: read: %v", l.MAC, err)
		}
		if f == nil {
			break
		}
	}
	l.T.Fatalf("member %s: the other end kept the link open", l.MAC)
}
