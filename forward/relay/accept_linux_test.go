package relay

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
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
