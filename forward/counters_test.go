package forward

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// echoDialer reaches an echo server on the host's loopback, kernel to
// kernel, as the gVisor path (Dialer) or the fast path (LocalDialer).
type echoDialer struct{ tcp, udp string }

func (e echoDialer) DialTCP(ctx context.Context, _ netip.Addr, _ netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", e.tcp)
}

func (e echoDialer) DialUDP(_ netip.Addr, _ netip.AddrPort) (net.Conn, error) {
	return net.Dial("udp", e.udp)
}

func (e echoDialer) DialLocal(ctx context.Context, _ uint16) (net.Conn, error) {
	return e.DialTCP(ctx, netip.Addr{}, netip.AddrPort{})
}

func startEcho(t *testing.T) echoDialer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return echoDialer{tcp: ln.Addr().String(), udp: pc.LocalAddr().String()}
}

// tcpEcho sends n bytes through addr, reads them back and closes.
func tcpEcho(t *testing.T, addr string, n int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != n {
		t.Fatalf("echo of %d bytes: got %d, %v", n, len(got), err)
	}
}

// waitFor polls counts until ok holds for their snapshot.
func waitFor(t *testing.T, counts *Counters, ok func(RelayStats) bool) RelayStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := counts.Stats()
		if ok(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCountersByPath: a connection through the Dialer counts as the gVisor
// path, one through the LocalDialer as the fast path, each with the bytes
// it carried each way; UDP flows count their datagrams' bytes.
func TestCountersByPath(t *testing.T) {
	e := startEcho(t)
	counts := new(Counters)
	for _, c := range []struct {
		fast bool
		path Path
		n    int
	}{{false, GVisor, 3000}, {true, Fast, 70000}} {
		l, err := bindPort(Mapping{Proto: TCP, HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var local LocalDialer
		if c.fast {
			local = e
		}
		go l.Serve(ctx, Member{IP: netip.MustParseAddr("10.0.0.2"), Counts: counts}, e, local)
		tcpEcho(t, net.JoinHostPort("127.0.0.1", itoa(l.Mapping().HostPort)), c.n)
		got := waitFor(t, counts, func(s RelayStats) bool {
			return s.TCP[c.path].BytesIn >= uint64(c.n) && s.TCP[c.path].BytesOut >= uint64(c.n)
		})
		if tr := got.TCP[c.path]; tr != (Traffic{Connections: 1, BytesIn: uint64(c.n), BytesOut: uint64(c.n)}) {
			t.Errorf("%s path after one echo of %d bytes: %+v", c.path, c.n, tr)
		}
	}

	l, err := bindPort(Mapping{Proto: UDP, HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 53})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Serve(ctx, Member{IP: netip.MustParseAddr("10.0.0.2"), Counts: counts}, e, nil)
	uc, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", itoa(l.Mapping().HostPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	buf := make([]byte, 100)
	for range 2 {
		uc.Write(make([]byte, 100))
		uc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := uc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if got := waitFor(t, counts, func(s RelayStats) bool { return s.UDP.BytesIn >= 200 && s.UDP.BytesOut >= 200 }).UDP; got != (Traffic{Connections: 1, BytesIn: 200, BytesOut: 200}) {
		t.Errorf("UDP after two datagrams of 100 bytes echoed: %+v", got)
	}
	if (*Counters)(nil).Stats() != (RelayStats{}) {
		t.Error("nil Counters have counts")
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
