package stack

import (
	"sync/atomic"

	"github.com/netns-run/netns-run/stack/ethswitch"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkWatcher sits between the link and the stack, for what the gateway
// does beside gVisor: it answers router solicitations (router6.go), takes
// echo requests past the gateway out of the stack's way, to send them on
// from the host (ping.go), and drops the SYNs the NAT would drop at a
// member's limits before gVisor works on them (syncheck.go). Every other
// frame passes for a look at a few header bytes.
type linkWatcher struct {
	nested.Endpoint
	g *Gateway
	// framesChecked: a switch in front asks CheckFrame about every frame
	// before it delivers it, so the packet need not be checked again.
	framesChecked atomic.Bool
}

var _ ethswitch.FrameRefuser = (*linkWatcher)(nil)

func watchLink(child gstack.LinkEndpoint, g *Gateway) *linkWatcher {
	w := &linkWatcher{g: g}
	w.Init(child, w)
	return w
}

func (w *linkWatcher) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	switch p {
	case ipv4.ProtocolNumber:
		if w.g.ping.take(pkt, false) || w.dropSYN(pkt, false) {
			return
		}
	case ipv6.ProtocolNumber:
		if w.g.ra != nil && isRouterSolicitation(pkt) {
			w.g.ra.solicited()
		}
		if w.g.ping.take(pkt, true) || w.dropSYN(pkt, true) {
			return
		}
	}
	w.Endpoint.DeliverNetworkPacket(p, pkt)
}

// dropSYN is the gateway's dropSYN for a packet whose frame CheckFrame
// has not seen.
func (w *linkWatcher) dropSYN(pkt *gstack.PacketBuffer, v6 bool) bool {
	return !w.framesChecked.Load() && w.g.dropSYN(pkt, v6)
}

// CheckFrame implements ethswitch.FrameRefuser: DeliverNetworkPacket's SYN
// check on a member's Ethernet frame, before the switch makes a gVisor
// packet of it. A SYN is never an echo request nor a router solicitation,
// so checking it first changes nothing else.
func (w *linkWatcher) CheckFrame(frame []byte) ethswitch.FrameVerdict {
	if !w.framesChecked.Load() {
		w.framesChecked.Store(true)
	}
	if len(frame) < header.EthernetMinimumSize {
		return ethswitch.FramePass
	}
	ip := frame[header.EthernetMinimumSize:]
	var syn synVerdict
	switch header.Ethernet(frame).Type() {
	case ipv4.ProtocolNumber:
		syn = w.g.checkSYN(ip, len(ip), false)
	case ipv6.ProtocolNumber:
		syn = w.g.checkSYN(ip, len(ip), true)
	}
	switch syn {
	case synDropped:
		return ethswitch.FrameRefused
	case synPassed:
		return ethswitch.FrameNewConn
	}
	return ethswitch.FramePass
}
