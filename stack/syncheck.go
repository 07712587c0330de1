package stack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// dropSYN reports whether pkt is a member's TCP SYN through the NAT that
// forwardTCP would drop at the member's handshakes or rate, and counts it
// as forwardTCP does. gVisor would parse such a SYN in full and start a
// goroutine for it (tcp.Forwarder), only for forwardTCP to drop it: under
// a SYN flood that work was what slowed the other members.
func (g *Gateway) dropSYN(pkt *gstack.PacketBuffer, v6 bool) bool {
	src, dst, ok := parseSYN(pkt, v6)
	// The gateway's own addresses are left to gVisor: its listeners (the
	// DNS proxy's TCP) are no NAT connections.
	if !ok || g.ownAddr(dst.Addr()) || !g.usage.dropsSYN(src) {
		return false
	}
	if _, allowed := g.hostTarget(src, dst); !allowed {
		return false // forwardTCP resets it, counted as no route
	}
	g.refused(src, true)
	return true
}

// parseSYN reads a connection's first segment, a TCP SYN without ACK, right
// after an unfragmented IPv4 header or after the IPv6 header. The checksum
// is not checked: gVisor's forwarder would ignore a bad one, and a frame
// this drops is one gVisor would not have made a connection of.
func parseSYN(pkt *gstack.PacketBuffer, v6 bool) (src netip.Addr, dst netip.AddrPort, ok bool) {
	size := pkt.Data().Size()
	ipLen, ipPayload := header.IPv6MinimumSize, 0
	if v6 {
		b, pulled := pkt.Data().PullUp(header.IPv6MinimumSize)
		ip := header.IPv6(b)
		if !pulled || ip.TransportProtocol() != header.TCPProtocolNumber || !ip.IsValid(size) {
			return netip.Addr{}, netip.AddrPort{}, false
		}
		ipPayload = int(ip.PayloadLength())
	} else {
		b, pulled := pkt.Data().PullUp(header.IPv4MinimumSize)
		ip := header.IPv4(b)
		if !pulled || ip.TransportProtocol() != header.TCPProtocolNumber || !ip.IsValid(size) || ip.More() || ip.FragmentOffset() != 0 {
			return netip.Addr{}, netip.AddrPort{}, false
		}
		ipLen = int(ip.HeaderLength())
		ipPayload = int(ip.TotalLength()) - ipLen
	}
	if ipPayload < header.TCPMinimumSize {
		return netip.Addr{}, netip.AddrPort{}, false
	}
	b, pulled := pkt.Data().PullUp(ipLen + header.TCPMinimumSize)
	if !pulled {
		return netip.Addr{}, netip.AddrPort{}, false
	}
	tcp := header.TCP(b[ipLen:])
	if tcp.Flags()&(header.TCPFlagSyn|header.TCPFlagAck) != header.TCPFlagSyn {
		return netip.Addr{}, netip.AddrPort{}, false
	}
	// Only a SYN's addresses are read: every other TCP frame passes
	// through here too.
	var dstAddr netip.Addr
	if v6 {
		ip := header.IPv6(b)
		src = netip.AddrFrom16(ip.SourceAddress().As16()).Unmap()
		dstAddr = netip.AddrFrom16(ip.DestinationAddress().As16()).Unmap()
	} else {
		ip := header.IPv4(b)
		src = netip.AddrFrom4(ip.SourceAddress().As4())
		dstAddr = netip.AddrFrom4(ip.DestinationAddress().As4())
	}
	return src, netip.AddrPortFrom(dstAddr, tcp.DestinationPort()), true
}
