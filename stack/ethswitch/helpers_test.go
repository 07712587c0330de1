package ethswitch

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	gwMAC     = net.HardwareAddr{0x02, 0x42, 10, 9, 0, 1}
	gwIP      = netip.MustParseAddr("10.9.0.1")
	bcastMAC  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	strayMAC  = net.HardwareAddr{0x02, 0x42, 10, 9, 0, 99}
	testDebug = os.Getenv("ETHSWITCH_DEBUG") != ""
)

func memberMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0x42, 10, 9, 0, byte(i)} }
func memberIP(i int) netip.Addr        { return netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}) }

func newSwitch(t testing.TB, opts Options) *Switch {
	t.Helper()
	if opts.GatewayMAC == nil {
		opts.GatewayMAC = gwMAC
	}
	if opts.MTU == 0 {
		opts.MTU = 65520
	}
	if !opts.GatewayIP.IsValid() {
		opts.GatewayIP = gwIP
	}
	if opts.Logger == nil {
		level := slog.LevelWarn
		if testDebug {
			level = slog.LevelDebug
		}
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// addSockMember attaches member i through an ethtest.Link.
func addSockMember(t testing.TB, s *Switch, i int) *ethtest.Link {
	t.Helper()
	l, swEnd := ethtest.NewLink(t, memberMAC(i), memberIP(i))
	if err := s.AddPort(Member{MAC: l.MAC, IP: l.IP, FD: swEnd}); err != nil {
		t.Fatal(err)
	}
	return l
}

// fakeDispatcher records what the switch delivers to the gateway.
type fakeDispatcher struct {
	mu   sync.Mutex
	pkts [][]byte // the whole frame, link header included
	c    chan struct{}
}

func attachFake(s *Switch) *fakeDispatcher {
	d := &fakeDispatcher{c: make(chan struct{}, 1024)}
	s.GatewayEndpoint().Attach(d)
	return d
}

func (d *fakeDispatcher) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	var b []byte
	b = append(b, pkt.LinkHeader().Slice()...)
	b = append(b, pkt.Data().AsRange().ToSlice()...)
	if ethtest.EtherType(b) != proto || pkt.NetworkProtocolNumber != proto {
		panic(fmt.Sprintf("protocol %d, frame says %d", proto, ethtest.EtherType(b)))
	}
	d.mu.Lock()
	d.pkts = append(d.pkts, b)
	d.mu.Unlock()
	d.c <- struct{}{}
}

func (*fakeDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (d *fakeDispatcher) expect(t testing.TB, want []byte) {
	t.Helper()
	select {
	case <-d.c:
	case <-time.After(2 * time.Second):
		t.Fatalf("gateway: no frame, want %d bytes", len(want))
	}
	d.mu.Lock()
	got := d.pkts[0]
	d.pkts = d.pkts[1:]
	d.mu.Unlock()
	if !bytes.Equal(got, want) {
		t.Fatalf("gateway: got a different frame (%d bytes, want %d)", len(got), len(want))
	}
}

func (d *fakeDispatcher) expectNothing(t testing.TB, wait time.Duration) {
	t.Helper()
	select {
	case <-d.c:
		t.Fatalf("gateway: unexpected frame %x", d.pkts[0][:min(64, len(d.pkts[0]))])
	case <-time.After(wait):
	}
}

// waitDrop waits until the switch has counted n drops for reason.
func waitDrop(t testing.TB, s *Switch, reason string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := s.Stats().Drops[reason]
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("drops[%q] = %d, want %d (all: %v)", reason, got, n, s.Stats().Drops)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
