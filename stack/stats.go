package stack

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// PeerStats are what the gateway's stack holds for one member address: its
// TCP connections and UDP flows in gVisor (outbound through the NAT, and
// published ports' connections that took the gVisor path), and the
// connections the NAT refused.
type PeerStats struct {
	TCP, UDP int
	// NoRoute counts connections to where the NAT does not go (another
	// member's address, the host's loopback without --host-loopback, an
	// internal network's outside); Capped those refused at the gateway's
	// limits on connections and flows.
	NoRoute, Capped uint64
}

// maxRefusalPeers bounds the addresses refusals are kept for: a private
// network's sandbox can send from any source; the rest count under the
// invalid address.
const maxRefusalPeers = 1024

type refusals struct{ noRoute, capped atomic.Uint64 }

// refusalTable counts the NAT's refusals by source address.
type refusalTable struct {
	m sync.Map // netip.Addr -> *refusals
	n atomic.Int64
}

// refused counts one refusal from src: allowed says whether the
// destination was one the NAT goes to (then the limit refused it).
func (g *Gateway) refused(src netip.Addr, allowed bool) {
	t := &g.refusals
	r, ok := t.m.Load(src)
	if !ok {
		if t.n.Add(1) > maxRefusalPeers {
			t.n.Add(-1)
			src = netip.Addr{}
		}
		r, _ = t.m.LoadOrStore(src, new(refusals))
	}
	if allowed {
		r.(*refusals).capped.Add(1)
	} else {
		r.(*refusals).noRoute.Add(1)
	}
}

// PeerStats counts, by member address, the open TCP connections and UDP
// flows of the gateway's stack and the NAT's refusals.
func (g *Gateway) PeerStats() map[netip.Addr]PeerStats {
	out := map[netip.Addr]PeerStats{}
	for _, ep := range g.s.RegisteredEndpoints() {
		e, ok := ep.(interface {
			Info() tcpip.EndpointInfo
			State() uint32
		})
		if !ok {
			continue
		}
		info, ok := e.Info().(*gstack.TransportEndpointInfo)
		if !ok || info.ID.RemoteAddress.Len() == 0 {
			continue // a listener
		}
		peer := netipAddr(info.ID.RemoteAddress)
		ps := out[peer]
		switch info.TransProto {
		case tcp.ProtocolNumber:
			if !openTCP(tcp.EndpointState(e.State())) {
				continue
			}
			ps.TCP++
		case udp.ProtocolNumber:
			ps.UDP++
		default:
			continue
		}
		out[peer] = ps
	}
	g.refusals.m.Range(func(k, v any) bool {
		ps := out[k.(netip.Addr)]
		ps.NoRoute = v.(*refusals).noRoute.Load()
		ps.Capped = v.(*refusals).capped.Load()
		out[k.(netip.Addr)] = ps
		return true
	})
	return out
}

// openTCP: a connection being made, made, or being closed by either side;
// not a listener and not one in TIME_WAIT.
func openTCP(s tcp.EndpointState) bool {
	switch s {
	case tcp.StateSynSent, tcp.StateSynRecv, tcp.StateEstablished, tcp.StateFinWait1, tcp.StateFinWait2,
		tcp.StateCloseWait, tcp.StateClosing, tcp.StateLastAck:
		return true
	}
	return false
}
