package daemon

import (
	"context"
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/netns-run/netns-run/internal/sandbox"
	"golang.org/x/sys/unix"
)

// newChannelDialer is an InsideDialer over a real dial channel whose other
// end (the agent's) stays open until the test ends.
func newChannelDialer(t *testing.T) *sandbox.InsideDialer {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	d, err := newInsideDialer(fds[0], netip.MustParseAddr("172.17.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func closed(d *sandbox.InsideDialer) bool {
	select {
	case <-d.Done():
		return true
	case <-time.After(time.Second):
		return false
	}
}

// A member's fast path without a dialer fails in a way forward falls back
// on (no refusal); a new dial channel replaces the old one, which is
// closed, as the last one is when the member leaves.
func TestFastPathSet(t *testing.T) {
	var p fastPath
	noChannel := func(when string) {
		t.Helper()
		_, err := p.DialLocal(context.Background(), 80)
		if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: DialLocal = %v; want an error that is not a refusal", when, err)
		}
	}
	noChannel("before a dial channel")
	first := newChannelDialer(t)
	p.set(first)
	second := newChannelDialer(t)
	p.set(second)
	if !closed(first) {
		t.Error("the replaced dialer is still open")
	}
	select {
	case <-second.Done():
		t.Error("the current dialer was closed")
	default:
	}
	p.set(nil)
	if !closed(second) {
		t.Error("the dialer is still open after the member left")
	}
	noChannel("after the member left")
}

// While a dial channel is expected, loopback clients wait for it (or for
// their deadline), and go on when it comes or it is known that none will.
func TestFastPathExpected(t *testing.T) {
	var p fastPath
	p.expect()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.DialLocal(ctx, 80); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DialLocal before the expected channel = %v; want it to wait until its deadline", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.DialLocal(context.Background(), 80)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("DialLocal returned %v before the expected channel came", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.set(nil) // none will come
	select {
	case err := <-done:
		if !errors.Is(err, errNoDialChannel) {
			t.Errorf("DialLocal once no channel will come = %v; want errNoDialChannel (the gVisor path)", err)
		}
	case <-time.After(time.Second):
		t.Fatal("DialLocal still waits once no channel will come")
	}
}

// newInsideDialer takes the descriptor: it is closed whether or not a
// dialer could be made of it.
func TestNewInsideDialerClosesFD(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := newInsideDialer(fd, netip.MustParseAddr("172.17.0.2")); err == nil {
		d.Close()
		t.Error("a UDP socket was taken as a dial channel")
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("the descriptor is still open after a failure (fcntl: %v)", err)
	}
}
