package forward

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
)

// nowEcho is echoDialer with DialLocalNow, as dialchan's Dialer has.
type nowEcho struct {
	echoDialer
	atOnce     bool // DialLocalNow connects; false: it says it would wait
	now, local atomic.Int32
}

func (e *nowEcho) DialLocalNow(uint16) (net.Conn, bool) {
	e.now.Add(1)
	if !e.atOnce {
		return nil, false
	}
	c, err := net.Dial("tcp", e.tcp)
	return c, err == nil
}

func (e *nowEcho) DialLocal(ctx context.Context, port uint16) (net.Conn, error) {
	e.local.Add(1)
	return e.echoDialer.DialLocal(ctx, port)
}

// TestAcceptedOnTheLoop: with a LocalDialer that connects without
// waiting, a loopback client is relayed from the event loop's accept; when
// it would wait, the client takes DialLocal, still the fast path. The
// port is free once Serve has returned.
func TestAcceptedOnTheLoop(t *testing.T) {
	for _, atOnce := range []bool{true, false} {
		e := &nowEcho{echoDialer: startEcho(t), atOnce: atOnce}
		counts := new(Counters)
		l, err := bindPort(Mapping{Proto: TCP, HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan struct{})
		go func() { l.Serve(ctx, Member{IP: netip.MustParseAddr("10.0.0.2"), Counts: counts}, e, e); close(served) }()
		addr := net.JoinHostPort("127.0.0.1", itoa(l.Mapping().HostPort))
		tcpEcho(t, addr, 5000)
		got := waitFor(t, counts, func(s RelayStats) bool { return s.TCP[Fast].BytesOut >= 5000 })
		if tr := got.TCP[Fast]; tr != (Traffic{Connections: 1, BytesIn: 5000, BytesOut: 5000}) {
			t.Errorf("atOnce=%v: fast path after one echo of 5000 bytes: %+v", atOnce, tr)
		}
		wantLocal := int32(1)
		if atOnce {
			wantLocal = 0
		}
		if n, m := e.now.Load(), e.local.Load(); n != 1 || m != wantLocal {
			t.Errorf("atOnce=%v: DialLocalNow called %d times, DialLocal %d; want 1 and %d", atOnce, n, m, wantLocal)
		}
		cancel()
		<-served
		again, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("atOnce=%v: the port after Serve returned: %v", atOnce, err)
		}
		again.Close()
	}
}
