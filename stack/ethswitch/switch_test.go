package ethswitch

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

const quiet = 150 * time.Millisecond // how long "nothing arrives" is watched

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

func TestUnicastMemberToMember(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b, c := addSockMember(t, s, 2), addSockMember(t, s, 3), addSockMember(t, s, 4)

	for _, n := range []int{0, 100, 1472, 65000 - 28} { // up to a frame near the MTU
		f := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1000, 2000, payload(n))
		a.Send(f)
		b.Expect(f)
	}
	f := ethtest.UDPFrame(a.MAC, b.MAC, b.IP, a.IP, 2000, 1000, payload(10))
	b.Send(f)
	a.Expect(f)
	c.ExpectNothing(quiet)
	gw.expectNothing(t, 0)
	a.ExpectNothing(0)
	if st := s.Stats(); st.MemberIn != 5 || st.MemberOut != 5 || len(st.Drops) != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestUnknownUnicastDropped(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	a.Send(ethtest.UDPFrame(strayMAC, a.MAC, a.IP, memberIP(99), 1, 2, payload(10)))
	waitDrop(t, s, DropUnknownUnicast, 1)
	// A frame to oneself is not reflected either.
	a.Send(ethtest.UDPFrame(a.MAC, a.MAC, a.IP, a.IP, 1, 2, payload(10)))
	waitDrop(t, s, DropHairpin, 1)
	a.ExpectNothing(quiet)
	b.ExpectNothing(0)
	gw.expectNothing(t, 0)
}

func TestBroadcastAndMulticast(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b, c := addSockMember(t, s, 2), addSockMember(t, s, 3), addSockMember(t, s, 4)

	req := ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, a.IP, net.HardwareAddr(make([]byte, 6)), b.IP)
	a.Send(req)
	b.Expect(req)
	c.Expect(req)
	gw.expect(t, req)
	a.ExpectNothing(quiet) // not reflected to the sender

	// IPv4 multicast (mDNS) from a link-local IPv6 source and IPv4.
	mc := ethtest.UDPFrame(net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 0xfb}, b.MAC, b.IP, netip.MustParseAddr("224.0.0.251"), 5353, 5353, payload(40))
	b.Send(mc)
	a.Expect(mc)
	c.Expect(mc)
	gw.expect(t, mc)
	b.ExpectNothing(quiet)
}

func TestSpoofedSourceMACDropped(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	// A claims B's MAC, toward B, the gateway and everyone.
	a.Send(ethtest.UDPFrame(b.MAC, b.MAC, b.IP, b.IP, 1, 2, payload(10)))
	a.Send(ethtest.UDPFrame(gwMAC, b.MAC, a.IP, gwIP, 1, 2, payload(10)))
	a.Send(ethtest.ARPFrame(bcastMAC, header.ARPRequest, strayMAC, a.IP, make(net.HardwareAddr, 6), gwIP))
	waitDrop(t, s, DropSrcMAC, 3)
	b.ExpectNothing(quiet)
	gw.expectNothing(t, 0)
}

func TestSpoofedSourceIPDropped(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	a.Send(ethtest.UDPFrame(b.MAC, a.MAC, b.IP, b.IP, 1, 2, payload(10)))                                                           // B's address
	a.Send(ethtest.UDPFrame(gwMAC, a.MAC, netip.MustParseAddr("8.8.8.8"), gwIP, 1, 2, payload(10)))                                 // anyone's
	a.Send(ethtest.UDPFrame(gwMAC, a.MAC, netip.IPv4Unspecified(), gwIP, 68, 68, payload(10)))                                      // 0.0.0.0, not DHCP
	a.Send(ethtest.UDPFrame(bcastMAC, a.MAC, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 67, 68, payload(10))) // 0.0.0.0, wrong direction
	waitDrop(t, s, DropSrcIP, 4)

	// Malformed IPv4 headers are not forwarded either.
	good := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, payload(10))
	short := good[:14+19]
	badLen := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(badLen[14+2:], uint16(len(good)))
	badIHL := append([]byte(nil), good...)
	badIHL[14] = 0x44
	for _, f := range [][]byte{short, badLen, badIHL} {
		a.Send(f)
	}
	waitDrop(t, s, DropMalformed, 3)
	b.ExpectNothing(quiet)
	gw.expectNothing(t, 0)

	// 0.0.0.0 is fine for a DHCP client (no hook: it is a plain broadcast).
	disc := ethtest.UDPFrame(bcastMAC, a.MAC, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67, payload(300))
	a.Send(disc)
	b.Expect(disc)
	gw.expect(t, disc)
	// Ethernet padding after the IPv4 total length is fine.
	padded := append(ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, nil), make([]byte, 18)...)
	a.Send(padded)
	b.Expect(padded)
}

func TestARPSpoofDropped(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	zero := make(net.HardwareAddr, 6)

	// Gratuitous ARP claiming B's IP (the classic poisoning).
	a.Send(ethtest.ARPFrame(bcastMAC, header.ARPReply, a.MAC, b.IP, bcastMAC, b.IP))
	// Reply to the gateway claiming to be the gateway.
	a.Send(ethtest.ARPFrame(gwMAC, header.ARPReply, a.MAC, gwIP, gwMAC, gwIP))
	// Sender hardware address other than the frame's (and the port's).
	f := ethtest.ARPFrame(bcastMAC, header.ARPRequest, strayMAC, a.IP, zero, gwIP)
	copy(f[6:12], a.MAC)
	a.Send(f)
	waitDrop(t, s, DropARPSpoof, 3)
	// Not ARP for IPv4 over Ethernet.
	bad := ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, a.IP, zero, gwIP)
	bad[14] = 0x01 // hardware type 1 -> 0x0101
	a.Send(bad)
	a.Send(ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, a.IP, zero, gwIP)[:14+27])
	waitDrop(t, s, DropMalformed, 2)
	b.ExpectNothing(quiet)
	gw.expectNothing(t, 0)

	// A probe (sender 0.0.0.0) and an honest request pass.
	probe := ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, netip.IPv4Unspecified(), zero, a.IP)
	a.Send(probe)
	b.Expect(probe)
	gw.expect(t, probe)
	reply := ethtest.ARPFrame(a.MAC, header.ARPReply, b.MAC, b.IP, a.MAC, a.IP)
	b.Send(reply)
	a.Expect(reply)
}

func TestRuntAndOversize(t *testing.T) {
	s := newSwitch(t, Options{MTU: 1500})
	gw := attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	a.Send(make([]byte, 10))
	waitDrop(t, s, DropRunt, 1)
	big := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, payload(1500-28+1))
	a.Send(big)
	waitDrop(t, s, DropOversize, 1)
	fits := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, payload(1500-28))
	a.Send(fits)
	b.Expect(fits)
	gw.expectNothing(t, 0)
}

func TestIsolate(t *testing.T) {
	s := newSwitch(t, Options{Isolate: true})
	gw := attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	a.Send(ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, payload(10)))
	waitDrop(t, s, DropIsolated, 1)
	req := ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, a.IP, make(net.HardwareAddr, 6), b.IP)
	a.Send(req)
	gw.expect(t, req) // the gateway still sees broadcasts
	b.ExpectNothing(quiet)
	// Member -> gateway works.
	toGW := ethtest.UDPFrame(gwMAC, a.MAC, a.IP, gwIP, 1, 2, payload(10))
	a.Send(toGW)
	gw.expect(t, toGW)
}

func TestGatewayUnattachedDrops(t *testing.T) {
	s := newSwitch(t, Options{})
	a := addSockMember(t, s, 2)
	a.Send(ethtest.UDPFrame(gwMAC, a.MAC, a.IP, gwIP, 1, 2, payload(10)))
	waitDrop(t, s, DropNoGateway, 1)
}

func TestDHCPHook(t *testing.T) {
	type call struct {
		req []byte
		m   Member
	}
	calls := make(chan call, 4)
	var bcastFlag atomic.Bool
	s := newSwitch(t, Options{DHCP: func(req []byte, m Member) ([]byte, bool) {
		calls <- call{append([]byte(nil), req...), m}
		if string(req) == "ignore me" {
			return nil, false
		}
		r := make([]byte, 300)
		r[0] = 2 // BOOTREPLY
		copy(r[4:8], req[4:8])
		if bcastFlag.Load() {
			r[10] = 0x80
		}
		copy(r[16:20], m.IP.AsSlice()) // yiaddr
		copy(r[28:34], m.MAC)
		copy(r[236:240], []byte{99, 130, 83, 99})
		return r, true
	}})
	gw := attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)

	req := payload(300)
	copy(req[4:8], "xid!")
	bcastIP := netip.MustParseAddr("255.255.255.255")
	check := func(wantDstMAC net.HardwareAddr, wantDstIP netip.Addr) {
		t.Helper()
		c := <-calls
		if !bytes.Equal(c.req, req) || c.m.MAC.String() != a.MAC.String() || c.m.IP != a.IP || c.m.FD != -1 {
			t.Fatalf("hook called with %d bytes, member %+v", len(c.req), c.m)
		}
		f := a.Recv(2 * time.Second)
		if f == nil {
			t.Fatal("no DHCP reply")
		}
		eth := header.Ethernet(f)
		if eth.SourceAddress() != tcpip.LinkAddress(gwMAC) || eth.DestinationAddress() != tcpip.LinkAddress(wantDstMAC) || eth.Type() != header.IPv4ProtocolNumber {
			t.Fatalf("ethernet %s -> %s type %#x", eth.SourceAddress(), eth.DestinationAddress(), eth.Type())
		}
		ip := header.IPv4(f[14:])
		if !ip.IsValid(len(f)-14) || !ip.IsChecksumValid() || ip.SourceAddress() != tcpip.AddrFrom4(gwIP.As4()) || ip.DestinationAddress() != tcpip.AddrFrom4(wantDstIP.As4()) || ip.TransportProtocol() != header.UDPProtocolNumber {
			t.Fatalf("bad IPv4 header %x", f[14:34])
		}
		udp := header.UDP(ip.Payload())
		body := udp.Payload()
		if udp.SourcePort() != 67 || udp.DestinationPort() != 68 || int(udp.Length()) != len(ip.Payload()) || len(body) != 300 || string(body[4:8]) != "xid!" {
			t.Fatalf("bad UDP header %x", udp[:8])
		}
		if !udp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(body, 0)) {
			t.Fatal("bad UDP checksum")
		}
	}
	// DISCOVER from 0.0.0.0 to the broadcast address: answered to A's
	// MAC at yiaddr (no broadcast flag), then with the flag, broadcast.
	a.Send(ethtest.UDPFrame(bcastMAC, a.MAC, netip.IPv4Unspecified(), bcastIP, 68, 67, req))
	check(a.MAC, a.IP)
	bcastFlag.Store(true)
	a.Send(ethtest.UDPFrame(bcastMAC, a.MAC, netip.IPv4Unspecified(), bcastIP, 68, 67, req))
	check(bcastMAC, bcastIP)
	bcastFlag.Store(false)
	// A renewal unicast to the gateway from A's address.
	a.Send(ethtest.UDPFrame(gwMAC, a.MAC, a.IP, gwIP, 68, 67, req))
	check(a.MAC, a.IP)
	// The hook declines: nothing is sent.
	a.Send(ethtest.UDPFrame(bcastMAC, a.MAC, netip.IPv4Unspecified(), bcastIP, 68, 67, []byte("ignore me")))
	<-calls
	a.ExpectNothing(quiet)
	// DHCP frames reach neither the other members nor gVisor.
	b.ExpectNothing(0)
	gw.expectNothing(t, 0)
	// DHCP to another address is not the gateway's business: plain
	// unicast to B (which may run a server).
	toB := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 68, 67, req)
	a.Send(toB)
	b.Expect(toB)
	if len(calls) != 0 {
		t.Fatal("hook called for DHCP to another member")
	}
}

func TestRemovePort(t *testing.T) {
	s := newSwitch(t, Options{})
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	f := ethtest.UDPFrame(b.MAC, a.MAC, a.IP, b.IP, 1, 2, payload(10))
	a.Send(f)
	b.Expect(f)

	s.RemovePort(b.MAC)
	// The switch's end is closed: the member's end sees EOF.
	if n, err := unix.Read(b.FD, make([]byte, 100)); n != 0 || err != nil {
		t.Fatalf("read after RemovePort = %d, %v; want EOF", n, err)
	}
	a.Send(f)
	waitDrop(t, s, DropUnknownUnicast, 1)
	s.RemovePort(b.MAC) // idempotent
	s.RemovePort(strayMAC)

	// B's address and MAC can be reused.
	b2 := addSockMember(t, s, 3)
	a.Send(f)
	b2.Expect(f)
}

func TestAddPortErrors(t *testing.T) {
	s := newSwitch(t, Options{})
	addSockMember(t, s, 2)
	cases := map[string]Member{
		"duplicate MAC":  {MAC: memberMAC(2), IP: memberIP(3)},
		"duplicate IP":   {MAC: memberMAC(3), IP: memberIP(2)},
		"gateway MAC":    {MAC: gwMAC, IP: memberIP(4)},
		"gateway IP":     {MAC: memberMAC(4), IP: gwIP},
		"multicast MAC":  {MAC: net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, IP: memberIP(4)},
		"short MAC":      {MAC: net.HardwareAddr{2, 0x42}, IP: memberIP(4)},
		"IPv6":           {MAC: memberMAC(4), IP: netip.MustParseAddr("fd00::4")},
		"no IP":          {MAC: memberMAC(4)},
		"unspecified IP": {MAC: memberMAC(4), IP: netip.IPv4Unspecified()},
	}
	for name, m := range cases {
		swEnd, mEnd := ethtest.Pair(t)
		m.FD = swEnd
		if err := s.AddPort(m); err == nil {
			t.Errorf("%s: AddPort succeeded", name)
			continue
		}
		// The switch closed its end even though it refused the port.
		if n, err := unix.Read(mEnd, make([]byte, 10)); n != 0 || err != nil {
			t.Errorf("%s: fd not closed (read = %d, %v)", name, n, err)
		}
	}
	if err := s.AddPort(Member{MAC: memberMAC(5), IP: memberIP(5), FD: -1}); err == nil {
		t.Error("AddPort(fd -1) succeeded")
	}
	s.Close()
	swEnd, _ := ethtest.Pair(t)
	if err := s.AddPort(Member{MAC: memberMAC(6), IP: memberIP(6), FD: swEnd}); err == nil {
		t.Error("AddPort after Close succeeded")
	}
}

func TestNewErrors(t *testing.T) {
	for name, o := range map[string]Options{
		"no gateway MAC":  {MTU: 1500},
		"group MAC":       {GatewayMAC: bcastMAC, MTU: 1500},
		"tiny MTU":        {GatewayMAC: gwMAC, MTU: 67},
		"huge MTU":        {GatewayMAC: gwMAC, MTU: 65536},
		"DHCP without IP": {GatewayMAC: gwMAC, MTU: 1500, DHCP: func([]byte, Member) ([]byte, bool) { return nil, false }},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestCloseClosesPorts(t *testing.T) {
	s := newSwitch(t, Options{})
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	s.Close()
	for _, m := range []*ethtest.Link{a, b} {
		if n, err := unix.Read(m.FD, make([]byte, 10)); n != 0 || err != nil {
			t.Errorf("member %s: read after Close = %d, %v", m.MAC, n, err)
		}
	}
	s.Close()
}

// A member closing its end stops its port's reader without disturbing the
// others.
func TestMemberHangsUp(t *testing.T) {
	s := newSwitch(t, Options{})
	a, b, c := addSockMember(t, s, 2), addSockMember(t, s, 3), addSockMember(t, s, 4)
	unix.Shutdown(a.FD, unix.SHUT_WR)
	time.Sleep(20 * time.Millisecond)
	f := ethtest.UDPFrame(c.MAC, b.MAC, b.IP, c.IP, 1, 2, payload(10))
	b.Send(f)
	c.Expect(f)
	s.RemovePort(a.MAC)
}

// A member's broadcast and multicast beyond its burst are dropped and
// counted: a flood would be written to every member and the gateway.
func TestBroadcastFloodBounded(t *testing.T) {
	s := newSwitch(t, Options{})
	attachFake(s)
	a := addSockMember(t, s, 2)
	addSockMember(t, s, 3)
	const sent = floodBurst + 200
	mc := ethtest.UDPFrame(bcastMAC, a.MAC, a.IP, netip.MustParseAddr("255.255.255.255"), 5000, 5000, payload(20))
	for range sent {
		a.Send(mc)
	}
	// The bucket refills at floodPerSecond while the frames are sent:
	// at least the excess over the burst and the refill is dropped.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Drops[DropFloodRate] < 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.Stats().Drops[DropFloodRate]; got < 100 || got > sent-floodBurst {
		t.Errorf("%d broadcasts at once: %d dropped over the rate; want about %d", sent, got, sent-floodBurst)
	}
}

// TestOnDrop: with OnDrop set and debug on, a drop is reported to it with
// the frame's addresses, and not logged.
func TestOnDrop(t *testing.T) {
	var logged bytes.Buffer
	reports := make(chan Drop, 16)
	s := newSwitch(t, Options{
		Logger: slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnDrop: func(d Drop) { reports <- d },
	})
	attachFake(s)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	a.Send(ethtest.UDPFrame(gwMAC, a.MAC, b.IP, gwIP, 1, 2, payload(10))) // B's address
	waitDrop(t, s, DropSrcIP, 1)
	select {
	case d := <-reports:
		var frame []string
		for _, at := range d.Frame {
			frame = append(frame, at.String())
		}
		if d.Member != a.MAC.String() || d.Reason != DropSrcIP || !slices.Contains(frame, "src_ip="+b.IP.String()) {
			t.Errorf("the report: %+v (frame %v); want A's spoofed source", d, frame)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no drop reported")
	}
	if strings.Contains(logged.String(), "drop") {
		t.Errorf("with OnDrop set the switch logged: %s", logged.String())
	}
}
