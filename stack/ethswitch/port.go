package ethswitch

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// EtherTypes the switch forwards; every other type is dropped, since the
// anti-spoofing checks could not look inside it (e.g. 802.1Q tags).
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherIPv6 = 0x86dd
)

// port is a member's end of the switch.
type port struct {
	sw   *Switch
	mac  [6]byte
	ip   [4]byte
	ip6  [16]byte // zero without IPv6 on the segment
	ll   [16]byte // link-local, from mac
	name string   // MAC, for logs and stats
	fd   int      // owned by f; written raw under wmu
	f    *os.File

	// wmu guards fd against Close while someone writes to it: writers
	// hold it shared and check closed; shutdown takes it exclusively.
	wmu    sync.RWMutex
	closed bool

	done chan struct{} // closed when run returns
	cnt  counters
	// flood bounds the broadcast and multicast frames the member may
	// send: each is written to every other member and the gateway.
	flood *rate.Limiter
	// rations is the member's reading budget; only run, and deliver on
	// its goroutine, touch it.
	rations rations
}

// A member whose frames the gateway refused rationAfter times in a window
// of rationWindow (SYNs past its limits: a flood) has its frames read at
// most rationFrames a window from then on, for as long as a window has
// rationAfter connection attempts, refused or not. The rest waits in its
// TAP's queue (a packet socket's buffer), where the kernel drops what does
// not fit, waking no one: the flood costs the network process the reading
// of rationFrames a window, not of every frame and the wakeup for it, and
// the other members get the CPU. The member's own traffic waits behind its
// flood meanwhile. The SYNs the gateway lets through count for staying
// rationed too: it looks at a member's bounds without taking from them, so
// a burst of SYNs read at once all pass, to be refused later by the NAT,
// and a flooder would come off its rations every few windows, each then
// reading all its queue (measured under hping3 -i u50: 11k frames a second
// read, 60% of the windows rationed, counting only refusals).
const (
	rationWindow = 10 * time.Millisecond
	rationAfter  = 5
	rationFrames = 20
)

// rations is a port's reading budget (see rationWindow).
type rations struct {
	windowEnd time.Time
	read      int  // frames read in the window
	rationed  bool // the window reads at most rationFrames
	// The window's frames the gateway refused, and the new connections
	// it took (FrameRefuser).
	refused, newConns int
}

// next is called before each read; it reports how long to wait before
// reading. A member that has made no connection attempt since its last
// window ended costs it no clock reading (its next window begins with its
// next attempt): a bulk transfer's frames go through unchanged.
func (r *rations) next(now func() time.Time) (wait time.Duration) {
	if !r.rationed && r.refused == 0 && r.newConns == 0 {
		return 0
	}
	t := now()
	if r.refused >= rationAfter {
		r.rationed = true
	}
	if r.rationed && r.read >= rationFrames && t.Before(r.windowEnd) {
		wait, t = r.windowEnd.Sub(t), r.windowEnd
	}
	if !t.Before(r.windowEnd) {
		r.rationed = r.rationed && r.refused+r.newConns >= rationAfter
		r.windowEnd, r.read, r.refused, r.newConns = t.Add(rationWindow), 0, 0, 0
	}
	r.read++
	return wait
}

// Broadcast and multicast a member may send a second (and at once): ARP,
// neighbour discovery, mDNS and the like need a few; a flood past them
// would cost every member of the segment.
const (
	floodPerSecond = 1000
	floodBurst     = 1000
)

// run reads frames from the member, within its rations, until the port
// is shut down or its fd fails. The read buffer is a pooled gVisor view:
// frames for members are written straight from it, and a large frame for
// the gateway takes the view over (a fresh one is pooled for the next
// read).
func (p *port) run() {
	defer close(p.done)
	s := p.sw
	v := buffer.NewViewSize(s.bufSize)
	defer func() { v.Release() }()
	for {
		if wait := p.rations.next(time.Now); wait > 0 {
			time.Sleep(wait)
		}
		buf := v.AsSlice()
		n, err := p.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
				s.log.Info("ethswitch: member fd closed by peer", "member", p.name)
			} else {
				s.log.Warn("ethswitch: member port stopped", "member", p.name, "err", err)
			}
			return
		}
		p.cnt.in.Add(1)
		p.cnt.inBytes.Add(uint64(n))
		if t := s.taps.Load(); t != nil {
			t.tap(buf[:min(n, s.frameMax)])
		}
		if n > s.frameMax {
			p.drop(dropOversize, buf[:min(n, ethHdrLen)])
			continue
		}
		if p.handle(buf[:n], v) {
			v = buffer.NewViewSize(s.bufSize)
		}
	}
}

// handle checks and forwards one frame from the member. It reports whether
// v (which backs frame) was handed to gVisor.
func (p *port) handle(frame []byte, v *buffer.View) bool {
	s := p.sw
	if len(frame) < ethHdrLen {
		p.drop(dropRunt, frame)
		return false
	}
	if [6]byte(frame[6:12]) != p.mac {
		p.drop(dropSrcMAC, frame)
		return false
	}
	l3 := frame[ethHdrLen:]
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case etherIPv4:
		r, dhcp := p.checkIPv4(l3)
		if r != dropNone {
			p.drop(r, frame)
			return false
		}
		if dhcp != nil {
			s.serveDHCP(p, dhcp)
			return false
		}
	case etherARP:
		if r := p.checkARP(l3); r != dropNone {
			p.drop(r, frame)
			return false
		}
	case etherIPv6:
		if r := p.checkIPv6(l3); r != dropNone {
			p.drop(r, frame)
			return false
		}
	default:
		p.drop(dropEtherType, frame)
		return false
	}

	t := s.tbl.Load()
	dst := [6]byte(frame[0:6])
	if dst[0]&1 != 0 { // broadcast or multicast
		if !p.flood.Allow() {
			p.drop(dropFloodRate, frame)
			return false
		}
		if !s.opts.Isolate {
			for _, q := range t.ports {
				if q != p {
					q.write(frame)
				}
			}
		}
		return s.gw.deliver(frame, v, p)
	}
	if dst == t.gwMAC {
		return s.gw.deliver(frame, v, p)
	}
	switch q := t.byMAC[dst]; {
	case q == nil:
		p.drop(dropUnknownUnicast, frame)
	case q == p:
		p.drop(dropHairpin, frame)
	case s.opts.Isolate:
		p.drop(dropIsolated, frame)
	default:
		q.write(frame)
	}
	return false
}

// checkIPv4 enforces the port's source address. The unspecified source is
// allowed only for a DHCP client (UDP 68 -> 67). When the frame is a DHCP
// request the switch answers (a hook is set, and it is addressed to the
// broadcast address or the gateway), the UDP payload is returned.
func (p *port) checkIPv4(ip []byte) (dropReason, []byte) {
	if len(ip) < 20 || ip[0]>>4 != 4 {
		return dropMalformed, nil
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < 20 || total < ihl || total > len(ip) {
		return dropMalformed, nil
	}
	src := [4]byte(ip[12:16])
	dhcp := isDHCPClient(ip[:total], ihl)
	if src != p.ip && !(src == [4]byte{} && dhcp) {
		return dropSrcIP, nil
	}
	if !dhcp || p.sw.opts.DHCP == nil {
		return dropNone, nil
	}
	if dst := [4]byte(ip[16:20]); dst != [4]byte{255, 255, 255, 255} && dst != p.sw.gwIP {
		return dropNone, nil
	}
	udp := ip[ihl:total]
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return dropMalformed, nil
	}
	return dropNone, udp[8:ulen]
}

// isDHCPClient reports whether ip (an IPv4 packet cut to its total length)
// is an unfragmented UDP datagram from port 68 to port 67.
func isDHCPClient(ip []byte, ihl int) bool {
	const udpProto = 17
	if ip[9] != udpProto || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 || len(ip) < ihl+8 {
		return false
	}
	udp := ip[ihl:]
	return binary.BigEndian.Uint16(udp[0:2]) == 68 && binary.BigEndian.Uint16(udp[2:4]) == 67
}

// checkARP enforces the port's own MAC and IPv4 address as the sender (the
// unspecified address is allowed, for ARP probes).
func (p *port) checkARP(a []byte) dropReason {
	if len(a) < 28 || binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != etherIPv4 || a[4] != 6 || a[5] != 4 {
		return dropMalformed
	}
	if [6]byte(a[8:14]) != p.mac {
		return dropARPSpoof
	}
	if spa := [4]byte(a[14:18]); spa != p.ip && spa != [4]byte{} {
		return dropARPSpoof
	}
	return dropNone
}

// write sends one frame to the member; it never blocks (a full queue drops).
func (p *port) write(frame []byte) {
	p.wmu.RLock()
	if p.closed {
		p.wmu.RUnlock()
		return
	}
	errno := rawfile.NonBlockingWrite(p.fd, frame)
	p.wmu.RUnlock()
	p.wrote(errno, frame, len(frame))
}

// writePacket sends a gVisor packet (link header included) to the member
// with one writev, without flattening it.
func (p *port) writePacket(pkt *stack.PacketBuffer) {
	var iovArr [8]unix.Iovec
	iovs := iovArr[:0]
	vl, off := pkt.AsViewList()
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		b, off = b[off:], 0
		iovs = append(iovs, rawfile.IovecFromBytes(b))
	}
	if len(iovs) == 0 {
		return
	}
	p.wmu.RLock()
	if p.closed {
		p.wmu.RUnlock()
		return
	}
	errno := rawfile.NonBlockingWriteIovec(p.fd, iovs)
	p.wmu.RUnlock()
	p.wrote(errno, pkt.LinkHeader().Slice(), pkt.Size())
}

// wrote counts a write of n bytes (frame, or its link header, for the log).
func (p *port) wrote(errno unix.Errno, frame []byte, n int) {
	if errno != 0 {
		p.dropErr(dropWrite, frame, errno)
		return
	}
	p.cnt.out.Add(1)
	p.cnt.outBytes.Add(uint64(n))
}

// shutdown closes the fd and waits for the reader. In-flight writes finish
// first; later ones see closed.
func (p *port) shutdown() {
	p.wmu.Lock()
	p.closed = true
	p.wmu.Unlock()
	p.f.Close() // wakes the reader's pending Read
	<-p.done
}
