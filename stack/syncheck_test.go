package stack

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tcpFrame is a member's TCP segment (no payload) from src to dst as an
// Ethernet frame, checksums right; IPv6 when the addresses are.
func tcpFrame(src, dst netip.AddrPort, flags header.TCPFlags) []byte {
	ipLen, ethType := header.IPv4MinimumSize, header.IPv4ProtocolNumber
	if src.Addr().Is6() {
		ipLen, ethType = header.IPv6MinimumSize, header.IPv6ProtocolNumber
	}
	frame := make([]byte, header.EthernetMinimumSize+ipLen+header.TCPMinimumSize)
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: memberMAC, DstAddr: gatewayMAC, Type: ethType})
	ip := frame[header.EthernetMinimumSize:]
	s, d := addr(src.Addr()), addr(dst.Addr())
	if src.Addr().Is6() {
		header.IPv6(ip).Encode(&header.IPv6Fields{
			PayloadLength: header.TCPMinimumSize, TransportProtocol: header.TCPProtocolNumber,
			HopLimit: 64, SrcAddr: s, DstAddr: d,
		})
	} else {
		h := header.IPv4(ip)
		h.Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen + header.TCPMinimumSize), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: s, DstAddr: d,
		})
		h.SetChecksum(^h.CalculateChecksum())
	}
	tcp := header.TCP(ip[ipLen:])
	tcp.Encode(&header.TCPFields{
		SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: flags, WindowSize: 65535,
	})
	tcp.SetChecksum(^tcp.CalculateChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, s, d, header.TCPMinimumSize)))
	return frame
}

// linkPacket is frame as a link hands it to the link watcher: the Ethernet
// header consumed, the IP packet as data.
func linkPacket(frame []byte) *gstack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return pkt
}

func parseFrame(frame []byte, v6 bool) (netip.Addr, netip.AddrPort, bool) {
	ip := frame[header.EthernetMinimumSize:]
	return parseSYN(ip, len(ip), v6)
}

func TestParseSYN(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct{ src, dst string }{
		{"10.0.2.100:40000", "198.51.100.2:80"},
		{"[fd00::64]:40000", "[2001:db8::2]:443"},
	} {
		src, dst := ap(c.src), ap(c.dst)
		v6 := src.Addr().Is6()
		gotSrc, gotDst, ok := parseFrame(tcpFrame(src, dst, header.TCPFlagSyn), v6)
		if !ok || gotSrc != src.Addr() || gotDst != dst {
			t.Errorf("SYN %s -> %s: parsed %s -> %s, %v", src, dst, gotSrc, gotDst, ok)
		}
		for _, flags := range []header.TCPFlags{header.TCPFlagSyn | header.TCPFlagAck, header.TCPFlagAck, header.TCPFlagRst, header.TCPFlagFin | header.TCPFlagAck} {
			if _, _, ok := parseFrame(tcpFrame(src, dst, flags), v6); ok {
				t.Errorf("%s -> %s with flags %s: taken for a SYN", src, dst, flags)
			}
		}
		syn := tcpFrame(src, dst, header.TCPFlagSyn)
		if _, _, ok := parseFrame(syn[:len(syn)-1], v6); ok {
			t.Errorf("%s -> %s: a SYN cut short was taken", src, dst)
		}
		if _, _, ok := parseFrame(syn, !v6); ok {
			t.Errorf("%s -> %s: a SYN read as the other IP version was taken", src, dst)
		}
	}

	syn := tcpFrame(ap("10.0.2.100:40000"), ap("198.51.100.2:80"), header.TCPFlagSyn)
	ip := header.IPv4(syn[header.EthernetMinimumSize:])
	ip.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	if _, _, ok := parseFrame(syn, false); ok {
		t.Error("a first fragment was taken (gVisor reassembles it)")
	}
	ip.SetFlagsFragmentOffset(0, 0)
	ip.SetTotalLength(header.IPv4MinimumSize + header.TCPMinimumSize - 1)
	if _, _, ok := parseFrame(syn, false); ok {
		t.Error("a SYN whose TCP header runs past the IPv4 total length was taken")
	}

	syn6 := tcpFrame(ap("[fd00::64]:40000"), ap("[2001:db8::2]:443"), header.TCPFlagSyn)
	header.IPv6(syn6[header.EthernetMinimumSize:]).SetNextHeader(uint8(header.IPv6HopByHopOptionsExtHdrIdentifier))
	if _, _, ok := parseFrame(syn6, true); ok {
		t.Error("an IPv6 packet with an extension header was taken (gVisor reads those)")
	}
}

// capped is what the gateway counted as refused at src's limits.
func capped(g *Gateway, src netip.Addr) uint64 {
	r, ok := g.refusals.m.Load(src)
	if !ok {
		return 0
	}
	return r.(*refusals).capped.Load()
}

// TestDropSYN: which SYNs the link watcher drops, and that it takes nothing
// from the member's limits to decide.
func TestDropSYN(t *testing.T) {
	g := testGateway6(false)
	g.usage = newUsage(MemberLimits{TCP: 3, HalfOpen: 1, NewTCPPerSecond: 2})
	ap := netip.MustParseAddrPort
	member, other := netip.MustParseAddr("10.0.2.100"), netip.MustParseAddr("10.0.2.101")
	drops := func(src netip.Addr, dst string) bool {
		t.Helper()
		pkt := linkPacket(tcpFrame(netip.AddrPortFrom(src, 40000), ap(dst), header.TCPFlagSyn))
		defer pkt.DecRef()
		return g.dropSYN(pkt, src.Is6())
	}

	if drops(member, "198.51.100.2:80") {
		t.Fatal("a member within its limits had its SYN dropped")
	}
	g.usage.take(member, tcpConn)
	g.usage.take(member, tcpHandshake)
	for i := range 3 {
		if !drops(member, "198.51.100.2:80") {
			t.Fatalf("SYN %d of a member at its handshakes: not dropped", i+1)
		}
	}
	if got := capped(g, member); got != 3 {
		t.Errorf("3 SYNs dropped at the handshakes: %d counted as capped", got)
	}
	for dst, why := range map[string]string{
		"10.0.2.3:53":   "the DNS proxy's TCP, a listener of the stack",
		"10.0.2.7:22":   "another member's, reset as no route",
		"127.0.0.1:631": "the host's loopback, reset as no route",
	} {
		if drops(member, dst) {
			t.Errorf("a SYN to %s (%s) was dropped at the member's limits", dst, why)
		}
	}
	// Where the resolver is the gateway's address, which also reaches
	// the host's loopback, port 53 is still the stack's listener.
	g.cfg.Resolver, g.cfg.HostLoopback = g.cfg.Gateway, true
	if drops(member, "10.0.2.2:53") {
		t.Error("a SYN to the DNS proxy at the gateway's address was dropped at the member's limits")
	}
	if drops(other, "198.51.100.2:80") {
		t.Error("another member's SYN was dropped while the first is at its limits")
	}
	g.usage.release(member, tcpHandshake)

	// The rate: looking at it takes no token.
	for range 5 {
		if drops(member, "198.51.100.2:80") {
			t.Fatal("a member with its burst of 2 unspent: SYN dropped")
		}
	}
	g.usage.allowNewTCP(member)
	g.usage.allowNewTCP(member)
	if !drops(member, "198.51.100.2:80") {
		t.Error("a member past its rate of new connections: SYN not dropped")
	}

	// At its connections a member gets a reset from forwardTCP instead.
	g.usage.take(member, tcpConn)
	g.usage.take(member, tcpConn)
	if drops(member, "198.51.100.2:80") {
		t.Error("a member at its TCP bound had its SYN dropped instead of reset")
	}
}

// TestCheckFrame: the link watcher's word to the switch on a member's
// frame: a SYN through the NAT is a new connection, refused (and counted)
// at the member's limits; anything else passes.
func TestCheckFrame(t *testing.T) {
	g := testGateway6(false)
	g.usage = newUsage(MemberLimits{TCP: 3, HalfOpen: 1, NewTCPPerSecond: 100})
	w := &linkWatcher{g: g}
	ap := netip.MustParseAddrPort
	member, member6 := ap("10.0.2.100:40000"), ap("[fd00::64]:40000")
	check := func(frame []byte, want ethswitch.FrameVerdict, what string) {
		t.Helper()
		if got := w.CheckFrame(frame); got != want {
			t.Errorf("%s: verdict %d, want %d", what, got, want)
		}
	}
	check(tcpFrame(member, ap("198.51.100.2:80"), header.TCPFlagSyn), ethswitch.FrameNewConn, "a SYN within the limits")
	check(tcpFrame(member6, ap("[2001:db8::2]:443"), header.TCPFlagSyn), ethswitch.FrameNewConn, "an IPv6 SYN within the limits")
	g.usage.take(member.Addr(), tcpHandshake)
	g.usage.take(member6.Addr(), tcpHandshake)
	check(tcpFrame(member, ap("198.51.100.2:80"), header.TCPFlagSyn), ethswitch.FrameRefused, "a SYN at the handshakes")
	check(tcpFrame(member6, ap("[2001:db8::2]:443"), header.TCPFlagSyn), ethswitch.FrameRefused, "an IPv6 SYN at the handshakes")
	if got := capped(g, member.Addr()) + capped(g, member6.Addr()); got != 2 {
		t.Errorf("2 SYNs refused: %d counted as capped", got)
	}
	check(tcpFrame(member, ap("198.51.100.2:80"), header.TCPFlagAck), ethswitch.FramePass, "an ACK")
	check(tcpFrame(member, ap("10.0.2.3:53"), header.TCPFlagSyn), ethswitch.FramePass, "a SYN to the DNS proxy")
	check(tcpFrame(member, ap("10.0.2.7:22"), header.TCPFlagSyn), ethswitch.FramePass, "a SYN to another member (reset as no route)")
	check(tcpFrame(member6, ap("[::ffff:198.51.100.2]:80"), header.TCPFlagSyn), ethswitch.FramePass, "an IPv6 SYN to a v4-mapped address (reset as no route)")
	check(tcpFrame(member, ap("198.51.100.2:80"), header.TCPFlagSyn)[:header.EthernetMinimumSize-1], ethswitch.FramePass, "a runt")
	arp := tcpFrame(member, ap("198.51.100.2:80"), header.TCPFlagSyn)
	header.Ethernet(arp).Encode(&header.EthernetFields{SrcAddr: memberMAC, DstAddr: gatewayMAC, Type: header.ARPProtocolNumber})
	check(arp, ethswitch.FramePass, "a SYN's bytes as ARP")
}

// oneHandshakeGateway is a gateway on a channel endpoint whose members may
// have one handshake in progress each.
func oneHandshakeGateway(tb testing.TB) *Gateway {
	tb.Helper()
	g, err := NewOnEndpoint(Config{
		Subnet: netip.MustParsePrefix("10.0.2.0/24"), Gateway: netip.MustParseAddr("10.0.2.2"), Resolver: netip.MustParseAddr("10.0.2.3"),
		GatewayMAC: []byte(gatewayMAC), MTU: 1500,
		MemberLimits: MemberLimits{HalfOpen: 1},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, channel.New(16, 1500, gatewayMAC))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}

// BenchmarkOverLimitSYN: what a SYN from a member at its bound of
// handshakes costs the gateway, taken to gVisor's forwarder (and
// forwardTCP, in a goroutine of its own) or dropped at the link watcher,
// as a packet or (frame) as the switch's frame, before it is a packet.
func BenchmarkOverLimitSYN(b *testing.B) {
	g := oneHandshakeGateway(b)
	w := g.s.GetLinkEndpointByName("").(*linkWatcher)
	member := netip.MustParseAddr("10.0.2.100")
	g.usage.take(member, tcpHandshake) // its one: nothing is ever dialed
	// A flooder's ever new source ports: gVisor ignores a SYN whose
	// connection is still in its forwarder, and so would never count it.
	frames := make([][]byte, 60000)
	for i := range frames {
		frames[i] = tcpFrame(netip.AddrPortFrom(member, uint16(1024+i)), netip.MustParseAddrPort("198.51.100.2:80"), header.TCPFlagSyn)
	}
	for _, c := range []struct {
		name    string
		deliver func(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer)
	}{
		{"gVisor", w.Endpoint.DeliverNetworkPacket},
		{"linkWatcher", w.DeliverNetworkPacket},
	} {
		b.Run(c.name, func(b *testing.B) {
			maxInFlight := g.s.Stats().TCP.ForwardMaxInFlightDrop
			dropped := func() uint64 { return capped(g, member) + maxInFlight.Value() }
			before := dropped()
			for i := range b.N {
				pkt := linkPacket(frames[i%len(frames)])
				c.deliver(ipv4.ProtocolNumber, pkt)
				pkt.DecRef()
			}
			// Until forwardTCP has dropped each: its goroutines are
			// the gateway's work too.
			for deadline := time.Now().Add(10 * time.Second); dropped()-before < uint64(b.N); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("%d SYNs delivered, %d dropped", b.N, dropped()-before)
				}
			}
		})
	}
	b.Run("frame", func(b *testing.B) {
		for i := range b.N {
			if w.CheckFrame(frames[i%len(frames)]) != ethswitch.FrameRefused {
				b.Fatal("an over-limit SYN was not refused")
			}
		}
	})
}

// Once a switch asks CheckFrame about its frames, the packets it then
// delivers are not checked a second time: before, an over-limit SYN is
// dropped at the packet; after a frame check, it is passed on.
func TestCheckedFramesNotCheckedAgain(t *testing.T) {
	g := oneHandshakeGateway(t)
	member := netip.MustParseAddr("10.0.2.100")
	g.usage.take(member, tcpHandshake) // at its handshakes: every SYN refused
	syn := func(port uint16) []byte {
		return tcpFrame(netip.AddrPortFrom(member, port), netip.MustParseAddrPort("198.51.100.2:80"), header.TCPFlagSyn)
	}
	w := watchLink(channel.New(16, 1500, gatewayMAC), g)
	var d countingDispatcher
	w.Attach(&d)
	deliver := func(port uint16) {
		pkt := linkPacket(syn(port))
		w.DeliverNetworkPacket(ipv4.ProtocolNumber, pkt)
		pkt.DecRef()
	}
	deliver(40000)
	if d.n != 0 {
		t.Fatal("an over-limit SYN no frame check saw went on to the stack")
	}
	if w.CheckFrame(syn(40001)) != ethswitch.FrameRefused {
		t.Fatal("a SYN at the member's handshakes passed the frame check")
	}
	deliver(40002)
	if d.n != 1 {
		t.Errorf("after a frame check, %d packets went on; want the one delivered, unchecked", d.n)
	}
}

// countingDispatcher counts the packets a link endpoint delivers to it.
type countingDispatcher struct{ n int }

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	d.n++
}

func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}
