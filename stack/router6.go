package stack

import (
	"encoding/binary"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The gateway is the IPv6 router of its segment: the sandbox's kernel
// configures its address by SLAAC from the gateway's router advertisements
// (as slirp4netns -6 does), or on a shared network takes the address IPAM
// assigned it and learns from them only the on-link prefix, the router and
// the resolver. gVisor does not send router advertisements, so
// the link watcher (link.go) spots router solicitations on their way in and
// the gateway answers each one, besides advertising when the link comes up
// and every raInterval after.

const (
	// raInterval re-advertises well inside every lifetime below.
	raInterval     = 10 * time.Minute
	routerLifetime = 1800 * time.Second
	// The prefix and resolver stay valid for as long as the gateway
	// advertises them; a stopped gateway takes the segment with it.
	prefixValid     = 24 * time.Hour
	prefixPreferred = 4 * time.Hour
	rdnssLifetime   = 3 * raInterval
)

// isRouterSolicitation: an IPv6 packet whose next header is ICMPv6 of type
// router solicitation. The network layer validates it as usual afterwards;
// a forged one only makes the gateway advertise once more.
func isRouterSolicitation(pkt *gstack.PacketBuffer) bool {
	b, ok := pkt.Data().PullUp(header.IPv6MinimumSize + 1)
	if !ok {
		return false
	}
	ip := header.IPv6(b)
	return ip.TransportProtocol() == header.ICMPv6ProtocolNumber && header.ICMPv6Type(b[header.IPv6MinimumSize]) == header.ICMPv6RouterSolicit
}

// advertiser sends the gateway's router advertisements.
type advertiser struct {
	s       *gstack.Stack
	frame   []byte // built once: nothing in it changes
	kick    chan struct{}
	stopped chan struct{}
}

// newAdvertiser advertises the segment's prefix (for SLAAC unless its
// addresses are assigned) with the gateway as default router and the
// resolver as its DNS server (RFC 8106), from the gateway's link-local
// address linkLocal and MAC mac, to all nodes.
func newAdvertiser(s *gstack.Stack, mac tcpip.LinkAddress, linkLocal tcpip.Address, v6 *IPv6Config) *advertiser {
	return &advertiser{
		s:       s,
		frame:   routerAdvertisement(mac, linkLocal, v6.Subnet, v6.Resolver, !v6.Assigned),
		kick:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
}

// solicited asks for an advertisement now; it never blocks the packet
// path, and a burst of solicitations gets one.
func (a *advertiser) solicited() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// run advertises at once, on every solicitation and every raInterval,
// until stop.
func (a *advertiser) run() {
	t := time.NewTicker(raInterval)
	defer t.Stop()
	for {
		// WriteRawPacket fails only while the NIC is going away.
		a.s.WriteRawPacket(nicID, ipv6.ProtocolNumber, buffer.MakeWithData(a.frame))
		select {
		case <-a.kick:
		case <-t.C:
		case <-a.stopped:
			return
		}
	}
}

func (a *advertiser) stop() { close(a.stopped) }

// routerAdvertisement is the whole Ethernet frame of the advertisement;
// slaac lets hosts make their addresses in prefix.
func routerAdvertisement(mac tcpip.LinkAddress, linkLocal tcpip.Address, prefix netip.Prefix, resolver netip.Addr, slaac bool) []byte {
	opts := header.NDPOptionsSerializer{
		header.NDPSourceLinkLayerAddressOption(mac),
		prefixInformation(prefix, slaac),
		recursiveDNSServer(resolver),
	}
	bodyLen := header.ICMPv6HeaderSize + header.NDPRAMinimumSize + opts.Length()
	frame := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+bodyLen)

	dst := header.IPv6AllNodesMulticastAddress
	header.Ethernet(frame).Encode(&header.EthernetFields{
		SrcAddr: mac,
		DstAddr: header.EthernetAddressFromMulticastIPv6Address(dst),
		Type:    header.IPv6ProtocolNumber,
	})
	header.IPv6(frame[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(bodyLen),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit, // 255: RFC 4861 drops anything else
		SrcAddr:           linkLocal,
		DstAddr:           dst,
	})
	icmp := header.ICMPv6(frame[header.EthernetMinimumSize+header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6RouterAdvert)
	// The advertisement's fixed part (RFC 4861 4.2): current hop limit,
	// no flags (addresses by SLAAC or assigned, no DHCPv6), router lifetime, and
	// reachable time and retransmission timer left to the host.
	ra := icmp.MessageBody()
	ra[0] = 64
	binary.BigEndian.PutUint16(ra[2:], uint16(routerLifetime/time.Second))
	header.NDPOptions(ra[header.NDPRAMinimumSize:]).Serialize(opts)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: linkLocal, Dst: dst}))
	return frame
}

// prefixInformation announces prefix as on-link, and for SLAAC when slaac
// (RFC 4861 4.6.2).
func prefixInformation(prefix netip.Prefix, slaac bool) header.NDPPrefixInformation {
	b := make([]byte, 30)
	b[0] = byte(prefix.Bits())
	b[1] = 0x80 // on-link
	if slaac {
		b[1] |= 0x40 // autonomous
	}
	binary.BigEndian.PutUint32(b[2:], uint32(prefixValid/time.Second))
	binary.BigEndian.PutUint32(b[6:], uint32(prefixPreferred/time.Second))
	a := prefix.Masked().Addr().As16()
	copy(b[14:], a[:])
	return header.NDPPrefixInformation(b)
}

// recursiveDNSServer names the resolver (RFC 8106 5.1).
func recursiveDNSServer(resolver netip.Addr) header.NDPRecursiveDNSServer {
	b := make([]byte, 2+4+16)
	binary.BigEndian.PutUint32(b[2:], uint32(rdnssLifetime/time.Second))
	a := resolver.As16()
	copy(b[6:], a[:])
	return header.NDPRecursiveDNSServer(b)
}
