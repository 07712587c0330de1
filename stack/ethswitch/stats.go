package ethswitch

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// dropReason says why a frame was not forwarded.
type dropReason int

const (
	dropNone dropReason = iota
	dropRunt
	dropOversize
	dropMalformed
	dropSrcMAC
	dropSrcIP
	dropARPSpoof
	dropIPv6Src
	dropEtherType
	dropUnknownUnicast
	dropHairpin
	dropIsolated
	dropNoGateway
	dropWrite
	dropGatewayClaim
	dropNDPSpoof
	dropRogueRouter
	dropGatewayClaim6
	dropFloodRate
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropNone:           "none",
	dropRunt:           DropRunt,
	dropOversize:       DropOversize,
	dropMalformed:      DropMalformed,
	dropSrcMAC:         DropSrcMAC,
	dropSrcIP:          DropSrcIP,
	dropARPSpoof:       DropARPSpoof,
	dropIPv6Src:        DropIPv6Src,
	dropEtherType:      DropEtherType,
	dropUnknownUnicast: DropUnknownUnicast,
	dropHairpin:        DropHairpin,
	dropIsolated:       DropIsolated,
	dropNoGateway:      DropNoGateway,
	dropWrite:          DropWrite,
	dropGatewayClaim:   DropGatewayClaim,
	dropNDPSpoof:       DropNDPSpoof,
	dropRogueRouter:    DropRogueRouter,
	dropGatewayClaim6:  DropGatewayClaim6,
	dropFloodRate:      DropFloodRate,
}

func (r dropReason) String() string {
	if r >= 0 && r < numDropReasons {
		return dropNames[r]
	}
	return fmt.Sprintf("drop(%d)", int(r))
}

// Drop reasons as reported in Stats.Drops.
const (
	DropRunt           = "runt frame"
	DropOversize       = "frame larger than MTU"
	DropMalformed      = "malformed header"
	DropSrcMAC         = "spoofed source MAC"
	DropSrcIP          = "spoofed source IPv4"
	DropARPSpoof       = "spoofed ARP sender"
	DropIPv6Src        = "spoofed source IPv6"
	DropEtherType      = "unsupported ethertype"
	DropUnknownUnicast = "unknown unicast"
	DropHairpin        = "destination is the sender"
	DropIsolated       = "member to member in isolate mode"
	DropNoGateway      = "gateway not attached"
	DropWrite          = "write failed"
	DropGatewayClaim   = "gateway ARP claims a member's IP"
	DropNDPSpoof       = "spoofed neighbour discovery"
	DropRogueRouter    = "router advertisement or redirect from a member"
	DropGatewayClaim6  = "gateway NDP claims a member's IPv6"
	DropFloodRate      = "broadcast or multicast over rate"
)

// counters belong to one port (or the gateway). in is only written by the
// port's reader; the rest are rare or per destination.
type counters struct {
	in       atomic.Uint64 // frames read from the port
	out      atomic.Uint64 // frames written to the port
	inBytes  atomic.Uint64
	outBytes atomic.Uint64
	drops    [numDropReasons]atomic.Uint64

	lastLog    atomic.Int64 // unix nanos of the last debug log
	suppressed atomic.Uint64
}

func (c *counters) add(o *counters) {
	c.in.Add(o.in.Load())
	c.out.Add(o.out.Load())
	c.inBytes.Add(o.inBytes.Load())
	c.outBytes.Add(o.outBytes.Load())
	for i := range c.drops {
		c.drops[i].Add(o.drops[i].Load())
	}
}

// Stats are the switch's counters since New, including removed ports.
type Stats struct {
	MemberIn       uint64            // frames read from members
	MemberOut      uint64            // frames written to members (by other members, the gateway or DHCP)
	MemberInBytes  uint64            // their bytes, Ethernet header included
	MemberOutBytes uint64            //
	GatewayIn      uint64            // frames gVisor sent into the switch
	GatewayOut     uint64            // frames delivered to gVisor
	Drops          map[string]uint64 // nonzero drop counts by reason (the Drop* constants)
}

// PortStats are one member's counters, from the member's side (as its
// eth0 would count): Tx is what it sent into the switch, Rx what the
// switch wrote to it.
type PortStats struct {
	MAC       net.HardwareAddr
	TxPackets uint64
	TxBytes   uint64
	RxPackets uint64
	RxBytes   uint64
	// Drops are the member's frames the switch dropped, and frames toward
	// it that could not be written, by reason (the Drop* constants).
	Drops map[string]uint64
}

// PortStats returns a snapshot of each current member's counters.
func (s *Switch) PortStats() []PortStats {
	ports := s.tbl.Load().ports
	out := make([]PortStats, 0, len(ports))
	for _, p := range ports {
		ps := PortStats{
			MAC:       net.HardwareAddr(append([]byte(nil), p.mac[:]...)),
			TxPackets: p.cnt.in.Load(), TxBytes: p.cnt.inBytes.Load(),
			RxPackets: p.cnt.out.Load(), RxBytes: p.cnt.outBytes.Load(),
			Drops: map[string]uint64{},
		}
		for i := dropReason(1); i < numDropReasons; i++ {
			if n := p.cnt.drops[i].Load(); n > 0 {
				ps.Drops[i.String()] = n
			}
		}
		out = append(out, ps)
	}
	return out
}

// Stats returns a snapshot of the counters.
func (s *Switch) Stats() Stats {
	var sum counters
	sum.add(&s.retired)
	for _, p := range s.tbl.Load().ports {
		sum.add(&p.cnt)
	}
	st := Stats{
		MemberIn:       sum.in.Load(),
		MemberOut:      sum.out.Load(),
		MemberInBytes:  sum.inBytes.Load(),
		MemberOutBytes: sum.outBytes.Load(),
		GatewayIn:      s.gw.cnt.in.Load(),
		GatewayOut:     s.gw.cnt.out.Load(),
		Drops:          map[string]uint64{},
	}
	for i := dropReason(1); i < numDropReasons; i++ {
		if n := sum.drops[i].Load() + s.gw.cnt.drops[i].Load(); n > 0 {
			st.Drops[i.String()] = n
		}
	}
	return st
}

// logEvery bounds the debug logging of drops per port.
const logEvery = 100 * time.Millisecond

func (p *port) drop(r dropReason, frame []byte) {
	p.sw.dropped(&p.cnt, p.name, r, frame, 0)
}

func (p *port) dropErr(r dropReason, frame []byte, errno unix.Errno) {
	p.sw.dropped(&p.cnt, p.name, r, frame, errno)
}

// dropped counts a drop and logs it at debug level, at most once per
// logEvery per port (the log line says how many were not logged).
func (s *Switch) dropped(c *counters, who string, r dropReason, frame []byte, errno unix.Errno) {
	c.drops[r].Add(1)
	if !s.debugEnabled() {
		return
	}
	now := time.Now().UnixNano()
	last := c.lastLog.Load()
	if now-last < int64(logEvery) || !c.lastLog.CompareAndSwap(last, now) {
		c.suppressed.Add(1)
		return
	}
	d := Drop{Member: who, Reason: r.String(), Frame: frameAttrs(frame), Suppressed: c.suppressed.Swap(0)}
	if errno != 0 {
		d.Frame = append(d.Frame, slog.String("err", errno.Error()))
	}
	if s.opts.OnDrop != nil {
		s.opts.OnDrop(d)
		return
	}
	attrs := append([]slog.Attr{slog.String("member", d.Member), slog.String("reason", d.Reason)}, d.Frame...)
	if d.Suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", d.Suppressed))
	}
	s.log.LogAttrs(context.Background(), slog.LevelDebug, "ethswitch: drop", attrs...)
}

// frameAttrs describes a frame's addresses for a log line.
func frameAttrs(f []byte) []slog.Attr {
	if len(f) < ethHdrLen {
		return []slog.Attr{slog.Int("len", len(f))}
	}
	et := binary.BigEndian.Uint16(f[12:14])
	a := []slog.Attr{
		slog.String("dst_mac", net.HardwareAddr(f[0:6]).String()),
		slog.String("src_mac", net.HardwareAddr(f[6:12]).String()),
		slog.String("ethertype", fmt.Sprintf("0x%04x", et)),
	}
	l3 := f[ethHdrLen:]
	switch {
	case et == etherIPv4 && len(l3) >= 20:
		a = append(a, slog.String("src_ip", netip.AddrFrom4([4]byte(l3[12:16])).String()),
			slog.String("dst_ip", netip.AddrFrom4([4]byte(l3[16:20])).String()))
	case et == etherARP && len(l3) >= 28:
		a = append(a, slog.String("arp_sender_mac", net.HardwareAddr(l3[8:14]).String()),
			slog.String("arp_sender_ip", netip.AddrFrom4([4]byte(l3[14:18])).String()))
	case et == etherIPv6 && len(l3) >= 40:
		a = append(a, slog.String("src_ip", netip.AddrFrom16([16]byte(l3[8:24])).String()))
	}
	return a
}
