package dialchan

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netns-run/netns-run/forward/relay"
	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

var lo = netip.MustParseAddr("127.0.0.1")

// fakeAgent serves a dial channel as the agent does, in this process's own
// network namespace: dials and pools of sockets. It counts the requests
// and notices when the channel is closed.
type fakeAgent struct {
	own    *net.UnixConn // the agent's end
	file   *os.File      // the end for the Dialer
	dials  chan wire.DialRequest
	closed chan struct{}
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	own, peer, err := wire.SocketPair("dial-channel")
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{own: own, file: peer, dials: make(chan wire.DialRequest, 1000), closed: make(chan struct{})}
	t.Cleanup(func() { own.Close(); peer.Close() })
	go func() {
		defer close(a.closed)
		buf := make([]byte, wire.MaxDialRequest)
		for {
			n, err := own.Read(buf)
			if err != nil || n == 0 {
				return
			}
			req, err := wire.DecodeDialRequest(buf[:n])
			if err != nil {
				continue
			}
			a.dials <- req
			rep := wire.DialReply{ID: req.ID}
			var fds []int
			if req.Pool > 0 {
				for range req.Pool {
					fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
					if err != nil {
						t.Error(err)
						return
					}
					fds = append(fds, fd)
				}
			} else {
				c, err := net.Dial("tcp", netip.AddrPortFrom(req.Addrs[0], req.Port).String())
				if err != nil {
					rep.Errno = unix.ECONNREFUSED
				} else {
					f, _ := c.(*net.TCPConn).File()
					c.Close()
					fds = append(fds, int(f.Fd()))
					defer f.Close()
				}
			}
			var oob []byte
			if len(fds) > 0 {
				oob = unix.UnixRights(fds...)
			}
			own.WriteMsgUnix(rep.Encode(), oob, nil)
			if req.Pool > 0 {
				wire.CloseFDs(fds)
			}
		}
	}()
	return a
}

// echoServer accepts on 127.0.0.1 and answers "hi".
func echoServer(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hi")
			c.Close()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func read(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func closedPort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

func wantNoChannel(t *testing.T, d *Dialer, when string) {
	t.Helper()
	_, err := d.DialLocal(context.Background(), 80)
	if !errors.Is(err, ErrNoChannel) || errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%s: DialLocal = %v; want ErrNoChannel (the gVisor path), no refusal", when, err)
	}
}

func TestSetAndReplace(t *testing.T) {
	port := echoServer(t)
	d, err := New(nil, lo)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	wantNoChannel(t, d, "before a channel")
	first := newFakeAgent(t)
	if err := d.Set(first.file); err != nil {
		t.Fatal(err)
	}
	c, err := d.DialLocal(context.Background(), port)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, c); got != "hi" {
		t.Errorf("through the first channel: %q", got)
	}
	first.file.Close() // the Dialer has its own copy
	second := newFakeAgent(t)
	d.Set(second.file)
	select {
	case <-first.closed:
	case <-time.After(5 * time.Second):
		t.Error("the replaced channel is still open")
	}
	if c, err := d.DialLocal(context.Background(), closedPort(t)); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Errorf("a closed port through the second channel: %v; want ECONNREFUSED", err)
	}
	d.Set(nil)
	wantNoChannel(t, d, "after Set(nil)")
	d.Close()
	if _, err := d.DialLocal(context.Background(), port); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v; want ErrClosed", err)
	}
}

// While a channel is expected, dials wait for it (or for their deadline)
// and go on when it comes or it is known that none will.
func TestExpect(t *testing.T) {
	port := echoServer(t)
	d, _ := New(nil, lo)
	defer d.Close()
	d.Expect()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d.DialLocal(ctx, port); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DialLocal before the expected channel = %v; want it to wait until its deadline", err)
	}
	done := make(chan error, 1)
	go func() {
		c, err := d.DialLocal(context.Background(), port)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("DialLocal returned %v before the expected channel came", err)
	case <-time.After(50 * time.Millisecond):
	}
	d.Set(newFakeAgent(t).file)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("DialLocal once the channel came: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DialLocal still waits once the channel came")
	}
	d.Expect()
	d.Set(nil) // none will come
	wantNoChannel(t, d, "once none will come")
}

// With an Opener the Dialer opens its channel at the first dial and again
// once the agent's end has gone; a failing Opener means the gVisor path.
func TestOpener(t *testing.T) {
	port := echoServer(t)
	var mu sync.Mutex
	var agents []*fakeAgent
	fail := false
	d, _ := New(func() (*os.File, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, errors.New("not running")
		}
		a := newFakeAgent(t)
		agents = append(agents, a)
		return a.file, nil
	}, lo)
	defer d.Close()
	for range 3 {
		c, err := d.DialLocal(context.Background(), port)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	mu.Lock()
	if len(agents) != 1 {
		t.Errorf("%d channels opened for 3 dials; want 1", len(agents))
	}
	mu.Unlock()
	// The agent's end goes away: the next dial opens a new channel.
	agents[0].own.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(agents)
		mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		if c, err := d.DialLocal(context.Background(), port); err == nil {
			c.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	if len(agents) != 2 {
		t.Errorf("after the channel ended, %d channels opened; want a second one", len(agents))
	}
	fail = true
	mu.Unlock()
}

func poolOff(t *testing.T) {
	old := poolBatch
	poolBatch = 0
	t.Cleanup(func() { poolBatch = old })
}

// Without the pool every dial is a round trip; with it, most are not.
func TestPool(t *testing.T) {
	port := echoServer(t)
	for _, pool := range []bool{false, true} {
		if !pool {
			poolOff(t)
		} else {
			poolBatch = 16
		}
		a := newFakeAgent(t)
		d, _ := New(nil, lo)
		d.Set(a.file)
		for range 40 {
			c, err := d.DialLocal(context.Background(), port)
			if err != nil {
				t.Fatal(err)
			}
			if got := read(t, c); got != "hi" {
				t.Errorf("pool=%v: %q", pool, got)
			}
			time.Sleep(time.Millisecond) // room for the refill
		}
		d.Close()
		dials := 0
		for len(a.dials) > 0 {
			if r := <-a.dials; r.Pool == 0 {
				dials++
			}
		}
		if !pool && dials != 40 {
			t.Errorf("without the pool: %d round trips for 40 dials; want 40", dials)
		}
		if pool && dials >= 40 {
			t.Errorf("with the pool: %d round trips for 40 dials; want fewer", dials)
		}
	}
}

// DialLocalNow connects only through the pool, and says false where
// DialLocal would wait: before any channel, with an empty pool, at a
// refused port, after Close.
func TestDialLocalNow(t *testing.T) {
	port := echoServer(t)
	d, _ := New(nil, lo)
	if _, ok := d.DialLocalNow(port); ok {
		t.Fatal("DialLocalNow with no channel: true")
	}
	a := newFakeAgent(t)
	d.Set(a.file)
	if _, ok := d.DialLocalNow(port); ok {
		t.Error("DialLocalNow before the pool was filled: true")
	}
	c, err := d.DialLocal(context.Background(), port) // starts the pool's refill
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, ok := d.DialLocalNow(port)
		if ok {
			if _, detached := c.(*relay.Socket); !detached {
				t.Errorf("DialLocalNow gave a %T, want a *relay.Socket", c)
			}
			if got := read(t, c); got != "hi" {
				t.Errorf("through DialLocalNow: %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("DialLocalNow never connected with a filled pool")
		}
		time.Sleep(time.Millisecond)
	}
	if _, ok := d.DialLocalNow(closedPort(t)); ok {
		t.Error("DialLocalNow to a closed port: true")
	}
	d.Close()
	if _, ok := d.DialLocalNow(port); ok {
		t.Error("DialLocalNow after Close: true")
	}
}
