package relay

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// relayed is one connection through relay.TCP between two kernel sockets:
// the client's side, the connection the relay got from the listener (its
// a) and, once relay.TCP has returned, its counts.
type relayed struct {
	client net.Conn
	a      net.Conn
	counts chan [2]int64
}

// relayOne dials through a relay to a server running serve and returns
// the connection once relay.TCP runs.
func relayOne(t testing.TB, serve func(net.Conn)) relayed {
	t.Helper()
	back, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close(); front.Close() })
	go func() {
		c, err := back.Accept()
		back.Close() // one connection each: the descriptor count is the relay's
		if err == nil {
			serve(c)
		}
	}()
	r := relayed{counts: make(chan [2]int64, 1)}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := front.Accept()
		front.Close()
		if err != nil {
			t.Log(err)
			close(accepted)
			return
		}
		inner, err := net.Dial("tcp4", back.Addr().String())
		if err != nil {
			t.Log(err)
			c.Close()
			close(accepted)
			return
		}
		accepted <- c
		aToB, bToA := TCP(c, inner)
		r.counts <- [2]int64{aToB, bToA}
	}()
	if r.client, err = net.Dial("tcp4", front.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.client.Close() })
	if r.a = <-accepted; r.a == nil {
		t.Fatal("the relay got no connection")
	}
	r.client.SetDeadline(time.Now().Add(20 * time.Second))
	return r
}

// wait returns relay.TCP's counts, failing the test if it does not return.
func (r relayed) wait(t testing.TB) [2]int64 {
	t.Helper()
	select {
	case n := <-r.counts:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("relay.TCP did not return")
		return [2]int64{}
	}
}

// TestRelayCounts: a request and a response cross whole while the
// connection stays open, and the counts are the bytes each way.
func TestRelayCounts(t *testing.T) {
	req := bytes.Repeat([]byte("q"), 1000)
	resp := make([]byte, 3<<20) // past smallRead: the splice path too
	rand.Read(resp)
	r := relayOne(t, func(s net.Conn) {
		defer s.Close()
		b := make([]byte, len(req))
		if _, err := io.ReadFull(s, b); err != nil || !bytes.Equal(b, req) {
			return // the client sees a short response
		}
		s.Write(resp)
		io.Copy(io.Discard, s)
	})
	if _, err := r.client.Write(req); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(resp))
	if _, err := io.ReadFull(r.client, got); err != nil || !bytes.Equal(got, resp) {
		t.Fatalf("response: intact %v, err %v", bytes.Equal(got, resp), err)
	}
	r.client.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(r.client); err != nil || len(rest) > 0 {
		t.Errorf("after the response: %q, %v; want end of stream", rest, err)
	}
	r.client.Close()
	if n := r.wait(t); n != [2]int64{int64(len(req)), int64(len(resp))} {
		t.Errorf("counts %v, want [%d %d]", n, len(req), len(resp))
	}
}

// TestRelayAnswerAndClose: a server's answer and its close, which come
// in one event, reach the client whole and then as the end of stream,
// while the client's side stays open; the client's own end then ends
// the relay.
func TestRelayAnswerAndClose(t *testing.T) {
	answer := bytes.Repeat([]byte("a"), 700) // a short read
	r := relayOne(t, func(s net.Conn) {
		s.Write(answer)
		s.Close()
	})
	got, err := io.ReadAll(r.client)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("the client read %d bytes, %v; want %d, then the end of stream", len(got), err, len(answer))
	}
	if _, err := r.client.Write([]byte("late")); err != nil {
		t.Errorf("the client's side was closed with the server's: %v", err)
	}
	r.client.Close()
	if n := r.wait(t); n[1] != int64(len(answer)) {
		t.Errorf("counts %v, want %d bytes back", n, len(answer))
	}
}

// TestRelayResetEndsBoth: a server that resets its connection ends the
// client's too, and relay.TCP returns.
func TestRelayResetEndsBoth(t *testing.T) {
	r := relayOne(t, func(s net.Conn) {
		b := make([]byte, 5)
		io.ReadFull(s, b)
		s.(*net.TCPConn).SetLinger(0) // close sends RST
		s.Close()
	})
	io.WriteString(r.client, "hello")
	io.ReadAll(r.client) // ends with the relay's close, reset or not
	r.wait(t)
	// The client's side is closed by the relay: a write soon fails.
	var err error
	for i := 0; i < 50 && err == nil; i++ {
		_, err = r.client.Write([]byte("more"))
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Error("the client can still write after the server's reset")
	}
}

// TestRelayClientResetEndsBoth: the other way: the client resets while the
// server waits for more; the server's read ends.
func TestRelayClientResetEndsBoth(t *testing.T) {
	ended := make(chan error, 1)
	r := relayOne(t, func(s net.Conn) {
		defer s.Close()
		s.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(s)
		ended <- err
	})
	io.WriteString(r.client, "partial")
	time.Sleep(50 * time.Millisecond)
	r.client.(*net.TCPConn).SetLinger(0)
	r.client.Close()
	select {
	case err := <-ended:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the server's read ran into its deadline: the client's reset did not end it")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server's read did not end after the client's reset")
	}
	if n := r.wait(t); n[0] != int64(len("partial")) {
		t.Errorf("a to b count %d, want %d", n[0], len("partial"))
	}
}

// TestRelayBothClose: both ends write and close at once; what each wrote
// arrives and the relay ends.
func TestRelayBothClose(t *testing.T) {
	fromServer := make(chan []byte, 1)
	r := relayOne(t, func(s net.Conn) {
		io.WriteString(s, "from server")
		s.(*net.TCPConn).CloseWrite()
		s.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(s)
		s.Close()
		fromServer <- b
	})
	io.WriteString(r.client, "from client")
	r.client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(r.client)
	r.client.Close()
	if err != nil || string(got) != "from server" {
		t.Errorf("client read %q, %v", got, err)
	}
	if b := <-fromServer; string(b) != "from client" {
		t.Errorf("server read %q", b)
	}
	if n := r.wait(t); n != [2]int64{11, 11} {
		t.Errorf("counts %v, want [11 11]", n)
	}
}

// TestRelayManyConnections: many connections at once, echoing bulk and
// small messages, each intact.
func TestRelayManyConnections(t *testing.T) {
	const conns = 200
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		r := relayOne(t, echo)
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := 100 + i*997 // small ones and ones of ~200 KiB
			data := make([]byte, size)
			rand.Read(data)
			go func() {
				r.client.Write(data)
				r.client.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(r.client)
			if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
				errs <- fmt.Errorf("connection %d: %d of %d bytes back, %v", i, len(got), size, err)
				return
			}
			r.client.Close()
			if n := r.wait(t); n != [2]int64{int64(size), int64(size)} {
				errs <- fmt.Errorf("connection %d: counts %v, want %d each way", i, n, size)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRelaySlowReader: a client that does not read stops the relay reading
// the server (backpressure): the server's writes stall at what the sockets
// and one pipe hold, and the relay's heap does not grow with them.
func TestRelaySlowReader(t *testing.T) {
	const total = 256 << 20
	data := make([]byte, 1<<20)
	rand.Read(data)
	var sent atomic.Int64
	r := relayOne(t, func(s net.Conn) {
		defer s.Close()
		for sent.Load() < total {
			n, err := s.Write(data)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		s.(*net.TCPConn).CloseWrite()
	})
	r.client.(*net.TCPConn).SetReadBuffer(64 << 10)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// Wait until the server's writes stall.
	last := int64(-1)
	for sent.Load() != last {
		last = sent.Load()
		time.Sleep(300 * time.Millisecond)
	}
	// The kernel's socket buffers on both legs, a pipe: some MiB, far
	// from all of it.
	if last > 64<<20 {
		t.Fatalf("the server wrote %d MiB to a client that reads nothing", last>>20)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Errorf("heap grew %d MiB while the client read nothing", grew>>20)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, r.client, make([]byte, 256<<10))
	if err != nil || n < total {
		t.Fatalf("client read %d bytes of at least %d: %v", n, total, err)
	}
	r.client.Close()
	if c := r.wait(t); c[1] != n {
		t.Errorf("b to a count %d, the client read %d", c[1], n)
	}
}

// TestRelayNoFDLeak: connections relayed to their end, cleanly or by a
// reset, leave no descriptor behind (the pipes kept for reuse aside).
func TestRelayNoFDLeak(t *testing.T) {
	one := func(reset bool) {
		r := relayOne(t, func(s net.Conn) {
			if reset {
				io.ReadFull(s, make([]byte, 1)) // a reset before the dial completes fails the dial
				s.(*net.TCPConn).SetLinger(0)
				s.Close()
				return
			}
			echo(s)
		})
		if reset {
			io.WriteString(r.client, "x")
		} else {
			big := make([]byte, 1<<20) // through a pipe
			go func() { r.client.Write(big); r.client.(*net.TCPConn).CloseWrite() }()
		}
		io.ReadAll(r.client)
		r.client.Close()
		r.wait(t)
	}
	one(false) // a pipe, kept for reuse
	time.Sleep(100 * time.Millisecond)
	base := openFDs(t) - 2*IdlePipes()
	for i := range 40 {
		one(i%4 == 0)
	}
	// The servers close their ends just after the relay has returned.
	left := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if left = openFDs(t) - 2*IdlePipes() - base; left == 0 {
			break
		}
	}
	if left != 0 {
		t.Errorf("%d descriptors more after 40 relayed connections", left)
	}
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// listenLoopback listens on 127.0.0.1 for the test's length.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestKernelPairsHoldNoGoroutine: connections between kernel sockets
// handed over with TCPThen are all relayed by the event loop: the caller
// is not held, and no goroutine waits per connection (a goroutine a
// direction would be 2 a connection), yet each carries its bytes both
// ways and reports them when it ends.
func TestKernelPairsHoldNoGoroutine(t *testing.T) {
	back, front := listenLoopback(t), listenLoopback(t)
	const n = 50
	servers := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := back.Accept()
			if err != nil {
				return
			}
			servers <- c
		}
	}()
	ended := make(chan [2]int64, n)
	clients := make([]net.Conn, n)
	before := runtime.NumGoroutine()
	for i := range clients {
		var err error
		if clients[i], err = net.Dial("tcp4", front.Addr().String()); err != nil {
			t.Fatal(err)
		}
		defer clients[i].Close()
		a, err := front.Accept()
		if err != nil {
			t.Fatal(err)
		}
		b, err := net.Dial("tcp4", back.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		TCPThen(a, b, func(aToB, bToA int64) { ended <- [2]int64{aToB, bToA} })
	}
	// The accept goroutine above ends once it has all n.
	if grew := runtime.NumGoroutine() - before; grew > 2 {
		t.Errorf("%d goroutines more with %d relayed connections; want at most the loop's", grew, n)
	}
	for i, c := range clients {
		s := <-servers
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s.SetDeadline(time.Now().Add(10 * time.Second))
		msg := fmt.Sprintf("hello %d", i)
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(s, got); err != nil || string(got) != msg {
			t.Fatalf("connection %d: the server read %q, %v", i, got, err)
		}
		io.WriteString(s, "ok")
		if _, err := io.ReadFull(c, got[:2]); err != nil || string(got[:2]) != "ok" {
			t.Fatalf("connection %d: the client read %q, %v", i, got[:2], err)
		}
		s.Close()
		c.Close()
		select {
		case counts := <-ended:
			if counts != [2]int64{int64(len(msg)), 2} {
				t.Errorf("connection %d ended with counts %v; want [%d 2]", i, counts, len(msg))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("connection %d: done was not called after both ends closed", i)
		}
	}
}

// detached is a test's DetachedSocket: a connected socket's descriptor
// that no *net.TCPConn holds. Its net.Conn methods are never called by
// the loop (nil: a call would fail the test with a panic).
// TestDetachedSocketOnLoop: a DetachedSocket (a socket made inside a
// sandbox, kept out of Go's poller) is relayed by the loop from its own
// descriptor, which the loop closes at the end.
func TestDetachedSocketOnLoop(t *testing.T) {
	back, front := listenLoopback(t), listenLoopback(t)
	client, err := net.Dial("tcp4", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	a, err := front.Accept()
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Dial("tcp4", back.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f, err := inner.(*net.TCPConn).File() // a duplicate: inner's own goes now
	inner.Close()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(fd, true)
	server, err := back.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ended := make(chan [2]int64, 1)
	TCPThen(a, NewSocket(fd), func(aToB, bToA int64) { ended <- [2]int64{aToB, bToA} })

	client.SetDeadline(time.Now().Add(10 * time.Second))
	server.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(client, "ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(server, got); err != nil || string(got) != "ping" {
		t.Fatalf("the server read %q, %v", got, err)
	}
	io.WriteString(server, "pong")
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "pong" {
		t.Fatalf("the client read %q, %v", got, err)
	}
	client.Close()
	server.Close()
	select {
	case n := <-ended:
		if n != [2]int64{4, 4} {
			t.Errorf("counts %v; want [4 4]", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("done was not called")
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("the detached descriptor %d is still open after the relay ended (%v)", fd, err)
	}
}

// An event moves the direction its side feeds and the one it drains,
// and both on an error or hangup.
func TestConcerns(t *testing.T) {
	for _, c := range []struct {
		side   uint64
		events uint32
		want   int
	}{
		{0, unix.EPOLLIN, moveAB},
		{1, unix.EPOLLIN, moveBA},
		{0, unix.EPOLLRDHUP, moveAB},
		{0, unix.EPOLLOUT, moveBA},
		{1, unix.EPOLLOUT, moveAB},
		{1, unix.EPOLLIN | unix.EPOLLOUT, moveAB | moveBA},
		{0, unix.EPOLLHUP, moveAB | moveBA},
		{1, unix.EPOLLERR, moveAB | moveBA},
	} {
		if got := concerns(c.side, c.events); got != c.want {
			t.Errorf("side %d, events %#x: %b, want %b", c.side, c.events, got, c.want)
		}
	}
}
