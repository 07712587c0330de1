package relay

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAcceptOnLoop: the loop accepts a burst of clients itself (all of
// them, though its registration is edge-triggered), tells each one's
// peer, and a client relayed from the callback carries its bytes; after
// stop and the listener's Close the port is free at once and nothing is
// accepted any more.
func TestAcceptOnLoop(t *testing.T) {
	back := listenLoopback(t)
	go func() {
		for {
			c, err := back.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	front := listenLoopback(t)
	var mu sync.Mutex
	var peers []netip.AddrPort
	stop, err := AcceptOnLoop(front.(*net.TCPListener), func(fd int, peer netip.AddrPort) {
		mu.Lock()
		peers = append(peers, peer)
		mu.Unlock()
		inner, err := net.Dial("tcp4", back.Addr().String()) // a test's shortcut: the callback must not block
		if err != nil {
			NewSocket(fd).Close()
			return
		}
		TCPThen(NewSocket(fd), inner, func(int64, int64) {})
	})
	if err != nil {
		t.Fatal(err)
	}
	const clients = 20
	var conns []net.Conn
	for range clients {
		c, err := net.Dial("tcp4", front.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := []byte{'a' + byte(i)}
		c.Write(msg)
		got := make([]byte, 1)
		if _, err := io.ReadFull(c, got); err != nil || got[0] != msg[0] {
			t.Fatalf("client %d read %q, %v", i, got, err)
		}
	}
	mu.Lock()
	for i, p := range peers {
		if p.Addr() != netip.MustParseAddr("127.0.0.1") || p.Port() != uint16(conns[i].LocalAddr().(*net.TCPAddr).Port) {
			t.Errorf("peer %d: %v, want 127.0.0.1:%d", i, p, conns[i].LocalAddr().(*net.TCPAddr).Port)
		}
	}
	n := len(peers)
	mu.Unlock()
	if n != clients {
		t.Fatalf("%d clients accepted, want %d", n, clients)
	}

	addr := front.Addr().String()
	stop()
	front.Close()
	again, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("the port after stop and Close: %v", err)
	}
	again.Close()
	if c, err := net.Dial("tcp4", addr); err == nil {
		c.Close()
		t.Error("a client connected after stop")
	}
}

// A client that waits while the process is out of descriptors is
// accepted once one is free again, with no other client to wake the
// loop.
func TestAcceptOnLoopAfterDescriptorShortage(t *testing.T) {
	front := listenLoopback(t)
	got := make(chan int, 1)
	stop, err := AcceptOnLoop(front.(*net.TCPListener), func(fd int, _ netip.AddrPort) { got <- fd })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil || old.Cur < 512 {
		t.Skipf("RLIMIT_NOFILE %d, %v", old.Cur, err)
	}
	lowered := old
	lowered.Cur = 512
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	var fill []int
	defer func() {
		for _, fd := range fill {
			unix.Close(fd)
		}
	}()
	for {
		fd, err := unix.Dup(0)
		if err == unix.EMFILE {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fill = append(fill, fd)
	}
	free := func() {
		unix.Close(fill[len(fill)-1])
		fill = fill[:len(fill)-1]
	}
	free() // the client's own
	client, err := net.Dial("tcp4", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	select {
	case fd := <-got:
		// A descriptor came free elsewhere in this process (a pair of
		// an earlier test closing) before the accept: no shortage met.
		unix.Close(fd)
		t.Skip("a descriptor came free before the accept")
	case <-time.After(100 * time.Millisecond):
	}
	free()
	select {
	case fd := <-got:
		unix.Close(fd)
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting client was not accepted once a descriptor was free")
	}
}
