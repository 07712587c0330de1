package ethswitch

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// IPv6 anti-spoofing, as the IPv4 rules: a member's packets come from its
// own address (its lease on a dual-stack network, or its link-local
// address, the one the kernel makes from its MAC) or, for ICMPv6 alone
// (duplicate address detection, MLD reports), from the unspecified
// address. Neighbour discovery may not claim another's address: a
// neighbour advertisement's target must be the member's own address, and
// every link-layer address option its own MAC. Router advertisements and
// redirects come from the gateway only.

// IPv6 next headers the switch walks or reads.
const (
	nhHopByHop = 0
	nhRouting  = 43
	nhFragment = 44
	nhICMPv6   = 58
	nhDestOpts = 60
	// maxExtHeaders bounds the walk to ICMPv6; a longer chain is dropped.
	maxExtHeaders = 8
)

// linkLocal is the address a kernel makes for the link from mac (modified
// EUI-64, the default addr_gen_mode), as the gateway's own is made.
func linkLocal(mac [6]byte) [16]byte {
	return header.LinkLocalAddr(tcpip.LinkAddress(mac[:])).As16()
}

// ip6Key is the switch table's key of a member's IPv6 address, valid or
// not (the zero key then: no member has it).
func ip6Key(a netip.Addr) [16]byte {
	if !a.IsValid() || !a.Is6() {
		return [16]byte{}
	}
	return a.As16()
}

// ownIPv6 reports whether a is one of the port's IPv6 addresses.
func (p *port) ownIPv6(a [16]byte) bool {
	return a == p.ll || (a == p.ip6 && a != [16]byte{})
}

// checkIPv6 enforces the port's IPv6 source and its neighbour discovery.
func (p *port) checkIPv6(ip []byte) dropReason {
	if len(ip) < header.IPv6MinimumSize || ip[0]>>4 != 6 {
		return dropMalformed
	}
	src := [16]byte(ip[8:24])
	nh, icmp, ok := icmpv6(ip)
	if !ok {
		return dropMalformed
	}
	switch {
	case p.ownIPv6(src):
	case src == [16]byte{} && nh == nhICMPv6:
	default:
		return dropIPv6Src
	}
	if icmp == nil {
		return dropNone
	}
	return p.checkNDP(icmp)
}

// icmpv6 walks the extension headers of an IPv6 packet to its upper
// layer: the last next header, and the ICMPv6 message when that is one.
// A fragment ends the walk: kernels ignore neighbour discovery in
// fragments (RFC 6980).
func icmpv6(ip []byte) (nh byte, icmp []byte, ok bool) {
	nh, rest := ip[6], ip[header.IPv6MinimumSize:]
	for range maxExtHeaders {
		switch nh {
		case nhICMPv6:
			if len(rest) < header.ICMPv6MinimumSize {
				return 0, nil, false
			}
			return nh, rest, true
		case nhHopByHop, nhRouting, nhDestOpts:
			if len(rest) < 8 {
				return 0, nil, false
			}
			n := (int(rest[1]) + 1) * 8
			if len(rest) < n {
				return 0, nil, false
			}
			nh, rest = rest[0], rest[n:]
		default: // TCP, UDP, a fragment, ...
			return nh, nil, true
		}
	}
	return 0, nil, false
}

// checkNDP checks a member's neighbour discovery message.
func (p *port) checkNDP(icmp []byte) dropReason {
	var opts []byte
	switch header.ICMPv6Type(icmp[0]) {
	case header.ICMPv6RouterAdvert, header.ICMPv6RedirectMsg:
		return dropRogueRouter
	case header.ICMPv6RouterSolicit:
		opts = icmp[min(len(icmp), header.ICMPv6HeaderSize+header.NDPRSMinimumSize):]
	case header.ICMPv6NeighborSolicit:
		if len(icmp) < header.ICMPv6NeighborSolicitMinimumSize {
			return dropMalformed
		}
		opts = icmp[header.ICMPv6NeighborSolicitMinimumSize:]
	case header.ICMPv6NeighborAdvert:
		if len(icmp) < header.ICMPv6NeighborAdvertMinimumSize {
			return dropMalformed
		}
		if !p.ownIPv6([16]byte(icmp[8:24])) {
			return dropNDPSpoof
		}
		opts = icmp[header.ICMPv6NeighborAdvertMinimumSize:]
	default:
		return dropNone
	}
	// Options: type, length in units of 8 bytes, value. A source or target
	// link-layer address (types 1 and 2) must be the port's MAC.
	for len(opts) > 0 {
		if len(opts) < 8 || opts[1] == 0 || len(opts) < int(opts[1])*8 {
			return dropMalformed
		}
		if t := opts[0]; (t == 1 || t == 2) && [6]byte(opts[2:8]) != p.mac {
			return dropNDPSpoof
		}
		opts = opts[int(opts[1])*8:]
	}
	return dropNone
}

// claimsMember6 reports whether pkt, from the gateway, is a neighbour
// advertisement for a member's address: with spoofing on, gVisor answers
// solicitations for every address, and must not for a member's (members
// answer for themselves).
func claimsMember6(pkt *stack.PacketBuffer, t *table) bool {
	nhdr := pkt.NetworkHeader().Slice()
	if len(nhdr) < header.IPv6MinimumSize || nhdr[6] != nhICMPv6 {
		return false
	}
	v := stack.PayloadSince(pkt.NetworkHeader())
	defer v.Release()
	b := v.AsSlice()
	if len(b) < header.IPv6MinimumSize+header.ICMPv6NeighborAdvertMinimumSize || header.ICMPv6Type(b[header.IPv6MinimumSize]) != header.ICMPv6NeighborAdvert {
		return false
	}
	target := [16]byte(b[header.IPv6MinimumSize+8 : header.IPv6MinimumSize+24])
	_, mine := t.byIP6[target]
	return mine
}
