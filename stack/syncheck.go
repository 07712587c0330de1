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
	size := pkt.Data().Size()
	b, _ := pkt.Data().PullUp(min(size, synHeadersMax))
	return g.checkSYN(b, size, v6) == synDropped
}

// synHeadersMax is the most of a SYN parseSYN reads: the largest IPv4
// header and a TCP header without options.
const synHeadersMax = 60 + header.TCPMinimumSize

// synVerdict is what checkSYN made of a packet.
type synVerdict int

const (
	notSYN     synVerdict = iota // no SYN through the NAT
	synPassed                    // one, for forwardTCP
	synDropped                   // one, dropped and counted
)

// checkSYN is dropSYN on an IP packet of size bytes whose first bytes, at
// least its headers, are ip; it also tells the SYNs it lets through to
// forwardTCP, which the switch counts (ethswitch.FrameNewConn).
func (g *Gateway) checkSYN(ip []byte, size int, v6 bool) synVerdict {
	src, dst, ok := parseSYN(ip, size, v6)
	// The gateway's own addresses are left to gVisor: its listeners (the
	// DNS proxy's TCP) are no NAT connections.
	if !ok || g.ownAddr(dst.Addr()) {
		return notSYN
	}
	if _, allowed := g.hostTarget(src, dst); !allowed {
		return notSYN // forwardTCP resets it, counted as no route
	}
	if !g.usage.dropsSYN(src) {
		return synPassed
	}
	g.refused(src, true)
	return synDropped
}

// parseSYN reads a connection's first segment, a TCP SYN without ACK, right
// after an unfragmented IPv4 header or after the IPv6 header, from b, the
// first bytes of an IP packet of size bytes. The checksum is not checked:
// gVisor's forwarder would ignore a bad one, and a frame this drops is one
// gVisor would not have made a connection of.
func parseSYN(b []byte, size int, v6 bool) (src netip.Addr, dst netip.AddrPort, ok bool) {
	ipLen, ipPayload := header.IPv6MinimumSize, 0
	if v6 {
		ip := header.IPv6(b)
		if len(b) < header.IPv6MinimumSize || ip.TransportProtocol() != header.TCPProtocolNumber || !ip.IsValid(size) {
			return netip.Addr{}, netip.AddrPort{}, false
		}
		ipPayload = int(ip.PayloadLength())
	} else {
		ip := header.IPv4(b)
		if len(b) < header.IPv4MinimumSize || ip.TransportProtocol() != header.TCPProtocolNumber || !ip.IsValid(size) || ip.More() || ip.FragmentOffset() != 0 {
			return netip.Addr{}, netip.AddrPort{}, false
		}
		ipLen = int(ip.HeaderLength())
		ipPayload = int(ip.TotalLength()) - ipLen
	}
	if ipPayload < header.TCPMinimumSize || len(b) < ipLen+header.TCPMinimumSize {
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
		src = netip.AddrFrom16(ip.SourceAddress().As16())
		dstAddr = netip.AddrFrom16(ip.DestinationAddress().As16())
	} else {
		ip := header.IPv4(b)
		src = netip.AddrFrom4(ip.SourceAddress().As4())
		dstAddr = netip.AddrFrom4(ip.DestinationAddress().As4())
	}
	return src, netip.AddrPortFrom(dstAddr, tcp.DestinationPort()), true
}
