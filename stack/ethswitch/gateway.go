package ethswitch

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// gatewayEndpoint is the switch's port toward gVisor: a stack.LinkEndpoint
// with an Ethernet header, like fdbased with EthernetHeader. Inbound frames
// are delivered inline on the sending member's reader goroutine; outbound
// packets are written to the owning member's fd (or every member's for
// broadcast and multicast), in order, on the caller's goroutine.
type gatewayEndpoint struct {
	sw  *Switch
	mtu atomic.Uint32

	// mu guards dispatcher. It is not held while a frame is delivered:
	// gVisor calls Attach(nil) with its stack lock held, and a delivery
	// takes that lock too. A delivery racing NIC removal reaches a disabled
	// NIC, which drops it.
	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	refuser    FrameRefuser // dispatcher, if it is one
	attached   atomic.Bool

	onCloseMu sync.Mutex
	onClose   func()

	cnt counters
}

var _ stack.LinkEndpoint = (*gatewayEndpoint)(nil)

// FrameRefuser is a dispatcher attached to GatewayEndpoint (the gateway's
// NIC, or a link endpoint in front of it) that turns some of the members'
// frames down: CheckFrame sees each frame for the gateway, Ethernet header
// included, before the switch makes a gVisor packet of it, and a frame it
// refuses is dropped there, as the dispatcher would have dropped it. A
// member whose frames it refuses often is rationed (rationWindow).
type FrameRefuser interface {
	CheckFrame(frame []byte) FrameVerdict
}

// FrameVerdict is a FrameRefuser's word on a frame.
type FrameVerdict int

const (
	FramePass    FrameVerdict = iota // delivered
	FrameNewConn                     // delivered: a connection's first segment
	FrameRefused                     // dropped: its sender is past its limits
)

func newGatewayEndpoint(s *Switch) *gatewayEndpoint {
	g := &gatewayEndpoint{sw: s}
	g.mtu.Store(s.opts.MTU)
	return g
}

// deliver hands a member's frame to gVisor. A frame that fills at least half
// of v's chunk takes v over (deliver reports true); smaller ones are copied
// into a right-sized pooled view, so that gVisor queues never pin 64 KiB
// per small segment.
func (g *gatewayEndpoint) deliver(frame []byte, v *buffer.View, from *port) bool {
	g.mu.RLock()
	d, r := g.dispatcher, g.refuser
	g.mu.RUnlock()
	if d == nil {
		from.drop(dropNoGateway, frame)
		return false
	}
	if r != nil {
		switch r.CheckFrame(frame) {
		case FrameRefused:
			from.rations.refused++
			return false
		case FrameNewConn:
			from.rations.newConns++
		}
	}
	var payload buffer.Buffer
	handed := false
	if v != nil && 2*len(frame) >= v.Capacity() {
		v.CapLength(len(frame))
		payload = buffer.MakeWithView(v)
		handed = true
	} else {
		payload = buffer.MakeWithData(frame)
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	hdr, _ := pkt.LinkHeader().Consume(ethHdrLen)
	proto := header.Ethernet(hdr).Type()
	pkt.NetworkProtocolNumber = proto
	switch {
	case [6]byte(frame[0:6]) == [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}:
		pkt.PktType = tcpip.PacketBroadcast
	case frame[0]&1 != 0:
		pkt.PktType = tcpip.PacketMulticast
	default:
		pkt.PktType = tcpip.PacketHost
	}
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
	g.cnt.out.Add(1)
	g.cnt.outBytes.Add(uint64(len(frame)))
	return handed
}

// WritePackets implements stack.LinkWriter: each packet goes to the member
// owning its destination MAC, or to all members for a group address.
// Packets nobody owns are dropped (and counted as sent, as a wire would).
func (g *gatewayEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	t := g.sw.tbl.Load()
	tp := g.sw.taps.Load()
	n := 0
	for _, pkt := range pkts.AsSlice() {
		n++
		g.cnt.in.Add(1)
		g.cnt.inBytes.Add(uint64(pkt.Size()))
		if tp != nil {
			v := pkt.ToView()
			tp.tap(v.AsSlice())
			v.Release()
		}
		lh := pkt.LinkHeader().Slice()
		if len(lh) < ethHdrLen {
			g.drop(dropMalformed, lh)
			continue
		}
		if pkt.NetworkProtocolNumber == header.ARPProtocolNumber && claimsMember(pkt, t) {
			// With spoofing on, gVisor answers ARP for every address;
			// it must not claim a member's (members answer for
			// themselves).
			g.drop(dropGatewayClaim, lh)
			continue
		}
		if pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber && claimsMember6(pkt, t) {
			g.drop(dropGatewayClaim6, lh)
			continue
		}
		dst := [6]byte(lh[0:6])
		if dst[0]&1 != 0 {
			for _, q := range t.ports {
				q.writePacket(pkt)
			}
			continue
		}
		q := t.byMAC[dst]
		if q == nil {
			g.drop(dropUnknownUnicast, lh)
			continue
		}
		q.writePacket(pkt)
	}
	return n, nil
}

// claimsMember reports whether pkt is an ARP packet whose sender protocol
// address belongs to a member.
func claimsMember(pkt *stack.PacketBuffer, t *table) bool {
	a := pkt.NetworkHeader().Slice()
	if len(a) < header.ARPSize {
		v, ok := pkt.Data().PullUp(header.ARPSize)
		if !ok {
			return false
		}
		a = v
	}
	_, mine := t.byIP[[4]byte(a[14:18])]
	return mine
}

func (g *gatewayEndpoint) drop(r dropReason, frame []byte) {
	g.sw.dropped(&g.cnt, "gateway", r, frame, 0)
}

// MTU implements stack.LinkEndpoint.
func (g *gatewayEndpoint) MTU() uint32 { return g.mtu.Load() }

// SetMTU implements stack.LinkEndpoint. Frames from members are still
// bounded by Options.MTU.
func (g *gatewayEndpoint) SetMTU(mtu uint32) { g.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint.
func (*gatewayEndpoint) MaxHeaderLength() uint16 { return ethHdrLen }

// LinkAddress implements stack.LinkEndpoint.
func (g *gatewayEndpoint) LinkAddress() tcpip.LinkAddress { return g.sw.tbl.Load().gwLink }

// SetLinkAddress implements stack.LinkEndpoint; the switch follows it.
func (g *gatewayEndpoint) SetLinkAddress(addr tcpip.LinkAddress) {
	if len(addr) == 6 {
		g.sw.setGatewayMAC([6]byte([]byte(addr)))
	}
}

// Capabilities implements stack.LinkEndpoint: Ethernet needs ARP/NDP.
func (*gatewayEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// Attach implements stack.LinkEndpoint.
func (g *gatewayEndpoint) Attach(d stack.NetworkDispatcher) {
	g.mu.Lock()
	g.dispatcher = d
	g.refuser, _ = d.(FrameRefuser)
	g.attached.Store(d != nil)
	g.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (g *gatewayEndpoint) IsAttached() bool { return g.attached.Load() }

// Wait implements stack.LinkEndpoint. The endpoint owns no goroutines: the
// member readers belong to the switch (see Switch.Close).
func (*gatewayEndpoint) Wait() {}

// ARPHardwareType implements stack.LinkEndpoint.
func (*gatewayEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint.
func (*gatewayEndpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(ethHdrLen))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements stack.LinkEndpoint.
func (*gatewayEndpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	hdr, ok := pkt.LinkHeader().Consume(ethHdrLen)
	if ok {
		pkt.NetworkProtocolNumber = header.Ethernet(hdr).Type()
	}
	return ok
}

// Close implements stack.LinkEndpoint (the NIC is being removed). It runs the
// action set by SetOnCloseAction; the switch itself keeps running.
func (g *gatewayEndpoint) Close() {
	g.onCloseMu.Lock()
	f := g.onClose
	g.onClose = nil
	g.onCloseMu.Unlock()
	if f != nil {
		f()
	}
}

// SetOnCloseAction implements stack.LinkEndpoint.
func (g *gatewayEndpoint) SetOnCloseAction(f func()) {
	g.onCloseMu.Lock()
	g.onClose = f
	g.onCloseMu.Unlock()
}
