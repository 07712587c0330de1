package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip"
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
}

func watchLink(child gstack.LinkEndpoint, g *Gateway) *linkWatcher {
	w := &linkWatcher{g: g}
	w.Init(child, w)
	return w
}

func (w *linkWatcher) DeliverNetworkPacket(p tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	switch p {
	case ipv4.ProtocolNumber:
		if w.g.ping.take(pkt, false) || w.g.dropSYN(pkt, false) {
			return
		}
	case ipv6.ProtocolNumber:
		if w.g.ra != nil && isRouterSolicitation(pkt) {
			w.g.ra.solicited()
		}
		if w.g.ping.take(pkt, true) || w.g.dropSYN(pkt, true) {
			return
		}
	}
	w.Endpoint.DeliverNetworkPacket(p, pkt)
}
