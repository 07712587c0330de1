package ethswitch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func memberIP6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x00, 2: 0x0d, 3: 0xb8, 15: byte(i)})
}

// memberLL is the link-local address member i's kernel makes from its MAC.
func memberLL(i int) netip.Addr { return netip.AddrFrom16(linkLocal([6]byte(memberMAC(i)))) }

// addSockMember6 attaches member i with IPv6 address memberIP6(i).
func addSockMember6(t testing.TB, s *Switch, i int) *ethtest.Link {
	t.Helper()
	l, swEnd := ethtest.NewLink(t, memberMAC(i), memberIP(i))
	if err := s.AddPort(Member{MAC: l.MAC, IP: l.IP, IP6: memberIP6(i), FD: swEnd}); err != nil {
		t.Fatal(err)
	}
	return l
}

// icmp6Frame is an ICMPv6 message (type, code 0, body after the checksum)
// with a correct checksum, in an IPv6 packet with hop limit 255.
func icmp6Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, typ header.ICMPv6Type, body []byte) []byte {
	m := header.ICMPv6(make([]byte, header.ICMPv6HeaderSize+len(body)))
	m.SetType(typ)
	copy(m[header.ICMPv6HeaderSize:], body)
	m.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: m, Src: tcpip.AddrFrom16(src.As16()), Dst: tcpip.AddrFrom16(dst.As16())}))
	return ethtest.IPv6Frame(dstMAC, srcMAC, src, dst, uint8(header.ICMPv6ProtocolNumber), m)
}

// ndBody is a neighbour solicitation's or advertisement's body: flags,
// target, and a link-layer address option of type opt (0: none).
func ndBody(flags uint32, target netip.Addr, opt byte, mac net.HardwareAddr) []byte {
	b := make([]byte, 4+16)
	binary.BigEndian.PutUint32(b, flags)
	t := target.As16()
	copy(b[4:], t[:])
	if opt != 0 {
		b = append(b, opt, 1)
		b = append(b, mac...)
	}
	return b
}

func solicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	m := [16]byte{0: 0xff, 1: 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}
	return netip.AddrFrom16(m), net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// TestIPv6Sources: a member sends from its lease or its own link-local
// address, or from :: for ICMPv6 alone; anything else is dropped and
// counted.
func TestIPv6Sources(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b := addSockMember6(t, s, 2), addSockMember6(t, s, 3)
	allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	mcast := netip.MustParseAddr("ff02::1")
	hbh := append([]byte{58, 0, 5, 2, 0, 0, 1, 0}, make([]byte, 24)...) // router alert, then ICMPv6
	ok := [][]byte{
		ethtest.IPv6Frame(allNodes, a.MAC, memberLL(2), mcast, 58, payload(24)),
		ethtest.IPv6Frame(allNodes, a.MAC, memberIP6(2), mcast, 17, payload(24)),
		ethtest.IPv6Frame(allNodes, a.MAC, netip.IPv6Unspecified(), mcast, 58, payload(24)), // DAD
		ethtest.IPv6Frame(allNodes, a.MAC, netip.IPv6Unspecified(), mcast, 0, hbh),          // MLD
		ethtest.IPv6Frame(b.MAC, a.MAC, memberIP6(2), memberIP6(3), 17, nil),                // unicast
	}
	for i, f := range ok {
		a.Send(f)
		b.Expect(f)
		if i < 4 {
			gw.expect(t, f)
		}
	}
	for _, src := range []netip.Addr{memberIP6(3), memberLL(3), netip.MustParseAddr("fe80::1"), netip.MustParseAddr("2001:db8::2")} {
		a.Send(ethtest.IPv6Frame(b.MAC, a.MAC, src, memberIP6(3), 17, payload(24)))
	}
	a.Send(ethtest.IPv6Frame(allNodes, a.MAC, netip.IPv6Unspecified(), mcast, 17, payload(24)))
	waitDrop(t, s, DropIPv6Src, 5)
	// A chain that does not add up, and one too long, are dropped too.
	a.Send(ethtest.IPv6Frame(allNodes, a.MAC, memberLL(2), mcast, 0, payload(24)))
	long := []byte{}
	for range maxExtHeaders + 1 {
		long = append(long, nhDestOpts, 0, 1, 4, 0, 0, 0, 0)
	}
	a.Send(ethtest.IPv6Frame(allNodes, a.MAC, memberLL(2), mcast, nhDestOpts, long))
	waitDrop(t, s, DropMalformed, 2)
	// Other ethertypes (here an 802.1Q tag) cannot be checked: dropped.
	a.Send(ethtest.EthFrame(b.MAC, a.MAC, 0x8100, payload(46)))
	waitDrop(t, s, DropEtherType, 1)
	b.ExpectNothing(quiet)
	gw.expectNothing(t, 0)
}

// TestNDPSpoofing: a member's neighbour discovery speaks for itself only.
func TestNDPSpoofing(t *testing.T) {
	s := newSwitch(t, Options{})
	gw := attachFake(s)
	a, b := addSockMember6(t, s, 2), addSockMember6(t, s, 3)
	const solicited = 0x40000000
	sn, snMAC := solicitedNode(memberIP6(3))
	honest := [][]byte{
		icmp6Frame(snMAC, a.MAC, memberIP6(2), sn, header.ICMPv6NeighborSolicit, ndBody(0, memberIP6(3), 1, a.MAC)),
		icmp6Frame(b.MAC, a.MAC, memberIP6(2), memberIP6(3), header.ICMPv6NeighborAdvert, ndBody(solicited, memberIP6(2), 2, a.MAC)),
		icmp6Frame(b.MAC, a.MAC, memberLL(2), memberLL(3), header.ICMPv6NeighborAdvert, ndBody(solicited, memberLL(2), 0, nil)),
	}
	for i, f := range honest {
		a.Send(f)
		b.Expect(f)
		if i == 0 {
			gw.expect(t, f)
		}
	}
	// An advertisement for another's address, or for the gateway's,
	// from the member's own source.
	for _, target := range []netip.Addr{memberIP6(3), memberLL(3), netip.MustParseAddr("fd00:db8::1"), netip.MustParseAddr("fe80::1")} {
		a.Send(icmp6Frame(b.MAC, a.MAC, memberIP6(2), memberIP6(3), header.ICMPv6NeighborAdvert, ndBody(solicited, target, 0, nil)))
	}
	// Its own address with another's MAC, in an advertisement or a
	// solicitation.
	a.Send(icmp6Frame(b.MAC, a.MAC, memberIP6(2), memberIP6(3), header.ICMPv6NeighborAdvert, ndBody(solicited, memberIP6(2), 2, strayMAC)))
	a.Send(icmp6Frame(snMAC, a.MAC, memberIP6(2), sn, header.ICMPv6NeighborSolicit, ndBody(0, memberIP6(3), 1, b.MAC)))
	waitDrop(t, s, DropNDPSpoof, 6)
	// Router advertisements and redirects come from the gateway only.
	allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	a.Send(icmp6Frame(allNodes, a.MAC, memberLL(2), netip.MustParseAddr("ff02::1"), header.ICMPv6RouterAdvert, make([]byte, 12)))
	a.Send(icmp6Frame(b.MAC, a.MAC, memberLL(2), memberLL(3), header.ICMPv6RedirectMsg, make([]byte, 36)))
	waitDrop(t, s, DropRogueRouter, 2)
	// A truncated advertisement and an option of length 0.
	a.Send(icmp6Frame(b.MAC, a.MAC, memberIP6(2), memberIP6(3), header.ICMPv6NeighborAdvert, make([]byte, 8)))
	a.Send(icmp6Frame(b.MAC, a.MAC, memberIP6(2), memberIP6(3), header.ICMPv6NeighborAdvert, append(ndBody(solicited, memberIP6(2), 0, nil), 2, 0, 0, 0, 0, 0, 0, 0)))
	waitDrop(t, s, DropMalformed, 2)
	b.ExpectNothing(quiet)
	gw.expectNothing(t, 0)
}

// TestGatewayNDPClaim: with spoofing on gVisor answers a solicitation for
// any address; its answers for members' addresses never reach anyone,
// while the member itself answers. The gateway still answers for its own.
func TestGatewayNDPClaim(t *testing.T) {
	s := newSwitch(t, Options{})
	st := gatewayStack(t, s, false)
	gw6 := netip.MustParseAddr("fd00:db8::1")
	if err := st.AddProtocolAddress(gwNIC, tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(gw6.As16()), PrefixLen: 64}}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	a, b := addSockMember6(t, s, 2), addSockMember6(t, s, 3)
	// Solicitations sent to the gateway's MAC (gVisor takes every
	// unicast address as its own) for the members' addresses.
	for i, target := range []netip.Addr{memberIP6(3), memberLL(3)} {
		a.Send(icmp6Frame(gwMAC, a.MAC, memberIP6(2), target, header.ICMPv6NeighborSolicit, ndBody(0, target, 1, a.MAC)))
		waitDrop(t, s, DropGatewayClaim6, uint64(i+1))
	}
	b.ExpectNothing(quiet)
	sn, snMAC := solicitedNode(gw6)
	a.Send(icmp6Frame(snMAC, a.MAC, memberIP6(2), sn, header.ICMPv6NeighborSolicit, ndBody(0, gw6, 1, a.MAC)))
	b.RecvMatch(quiet, func([]byte) bool { return false }) // the solicitation, flooded
	na := a.RecvMatch(2*time.Second, func(f []byte) bool {
		ip := header.IPv6(f[header.EthernetMinimumSize:])
		return len(f) > 54 && ip.TransportProtocol() == header.ICMPv6ProtocolNumber && header.ICMPv6(ip.Payload()).Type() == header.ICMPv6NeighborAdvert
	})
	if na == nil {
		t.Fatal("the gateway did not advertise its own address")
	}
	if got := header.NDPNeighborAdvert(header.ICMPv6(header.IPv6(na[header.EthernetMinimumSize:]).Payload()).MessageBody()).TargetAddress(); got != tcpip.AddrFrom16(gw6.As16()) {
		t.Errorf("the gateway advertised %s, want %s", got, gw6)
	}
	a.ExpectNothing(quiet)
}

func TestAddPortIPv6(t *testing.T) {
	s := newSwitch(t, Options{})
	addSockMember6(t, s, 2)
	for _, c := range []struct {
		i  int
		ip string
	}{
		{3, "fd00:db8::2"}, // another's
		{4, "fe80::1"},
		{5, "ff02::1"},
		{6, "::ffff:10.9.0.6"},
		{7, "::"},
	} {
		l, swEnd := ethtest.NewLink(t, memberMAC(c.i), memberIP(c.i))
		if err := s.AddPort(Member{MAC: l.MAC, IP: l.IP, IP6: netip.MustParseAddr(c.ip), FD: swEnd}); err == nil {
			t.Errorf("AddPort with IPv6 %s succeeded", c.ip)
		}
	}
	// The address is free again once its member is gone.
	s.RemovePort(memberMAC(2))
	addSockMember6(t, s, 2)
}
