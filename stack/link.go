package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/nested"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkWatcher sits between the link and the stack, for what the gateway
// does beside gVisor: it answers router solicitations (router6.go) and
// takes echo requests past the gateway out of the stack's way, to send
// them on from the host (ping.go). Every other frame passes for one
// protocol comparison and, for ICMP, a look at a few header bytes.
type linkWatcher struct {
	nested.Endpoint
	g *Gateway
}

func watchLink(child gstack.LinkEndpoint, g *Gateway) *linkWatcher {
	w := &linkWatcher{g: g}
	w.Init(child, w)
	return w
}

func (w *linkWatcher) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	switch p {
	case ipv4.ProtocolNumber:
		if w.g.ping.take(pkt, false) {
			return
		}
	case ipv6.ProtocolNumber:
		if w.g.ra != nil && isRouterSolicitation(pkt) {
			w.g.ra.solicited()
		}
		if w.g.ping.take(pkt, true) {
			return
		}
	}
	w.Endpoint.DeliverNetworkPacket(p, pkt)
}
