package stack

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/netns-run/netns-run/forward/relay"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// maxInFlightSYNs bounds handshakes the forwarder dials at once.
	maxInFlightSYNs = 512
	dialTimeout     = 10 * time.Second
	// udpIdle ends an outbound UDP flow with no traffic either way;
	// dnsIdle a flow to port 53, a query and its answer, as libslirp
	// expires DNS sockets fast, so that a member's own resolver does not
	// hold its flows for a minute a query.
	udpIdle = 60 * time.Second
	dnsIdle = 10 * time.Second
	// fullBufferConns is how many connections get gVisor's autotuned
	// buffers where no budget says (takeConn).
	fullBufferConns = 8
)

// tcpBuffers is what a gateway connection's buffers may grow to. A
// member that writes and never reads makes each of its connections hold
// all of them: gVisor's send and receive buffers and what the relay read
// for it (docs/ARCHITECTURE.md, Processes: Trust).
type tcpBuffers int

const (
	// autotunedBuffers are gVisor's (up to 4 MiB a way) and the relay's
	// bulk ones: bulk transfers at full speed.
	autotunedBuffers tcpBuffers = iota
	// fixedBuffers are fixedReceive and fixedSend, with the relay's small
	// copy buffers: still some Gbit/s a stream at the host's round trip.
	fixedBuffers
)

// One stream to the host and back, Gbit/s, on a loaded two-core machine:
// autotuned 6.5 / 6.0; both fixed buffers 256 KiB 4.5 / 5.9, 128 KiB
// 3.3 / 4.4; 128 KiB in and 64 KiB out 2.2-2.6 / 2.6-3.0. A 64 KiB
// receive buffer stalls the stream to the host after its first bytes.
const (
	fixedReceive = 128 << 10
	fixedSend    = 64 << 10
)

// bytes is the most a connection with b holds.
func (b tcpBuffers) bytes() int {
	if b == autotunedBuffers {
		return 2*tcp.MaxBufferSize + relay.MaxBufferedTCP
	}
	return fixedReceive + fixedSend + relay.MaxBufferedTCPSmall
}

func (g *Gateway) startNAT() {
	tf := tcp.NewForwarder(g.s, 0, maxInFlightSYNs, g.forwardTCP)
	g.s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(g.s, g.forwardUDP)
	g.s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
}

// hostTarget says where on the host a connection from src to dst goes, or
// false when it must be refused.
func (g *Gateway) hostTarget(src netip.Addr, dst netip.AddrPort) (netip.AddrPort, bool) {
	ip := dst.Addr()
	v6 := g.cfg.IPv6
	switch {
	case g.cfg.Internal:
		return netip.AddrPort{}, false
	case ip == g.cfg.Gateway:
		return g.hostLoopback(src, netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port())
	case v6 != nil && ip == v6.Gateway:
		return g.hostLoopback(src, netip.IPv6Loopback(), dst.Port())
	case g.cfg.Subnet.Contains(ip), v6 != nil && v6.Subnet.Contains(ip),
		ip.IsLoopback(), ip.IsUnspecified(), ip.IsMulticast(), ip.IsLinkLocalUnicast(), ip.Is4In6(), ip == limitedBroadcast,
		ip.Is6() && v6 == nil:
		// Nothing of the host lives in the segment, the host's loopback
		// is reached only through the gateway's addresses (never spelled
		// as a v4-mapped address), and a segment without IPv6 has no IPv6
		// way out.
		return netip.AddrPort{}, false
	}
	return dst, true
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// hostLoopback is the host's loopback address lo at port, where src may
// reach it.
func (g *Gateway) hostLoopback(src, lo netip.Addr, port uint16) (netip.AddrPort, bool) {
	if _, member := g.loopbackFor.Load(src); !g.cfg.HostLoopback && !member {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(lo, port), true
}

// outboundAddr is the host address outbound connections to target are
// bound to, if one is configured for its family.
func (g *Gateway) outboundAddr(target netip.Addr) net.IP {
	a := g.cfg.OutboundAddr
	if target.Is6() {
		a = netip.Addr{}
		if g.cfg.IPv6 != nil {
			a = g.cfg.IPv6.OutboundAddr
		}
	}
	if !a.IsValid() {
		return nil
	}
	return a.AsSlice()
}

// forwardTCP runs in its own goroutine per SYN (gVisor starts it).
func (g *Gateway) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	src := netipAddr(id.RemoteAddress)
	dst := netip.AddrPortFrom(netipAddr(id.LocalAddress), id.LocalPort)
	target, allowed := g.hostTarget(src, dst)
	var bufs tcpBuffers
	ok := false
	if allowed {
		bufs, ok = g.usage.takeConn(src)
	}
	if !ok {
		// Past its TCP bound or its buffers a member gets a reset,
		// counted as capped; where it may not go, as no route.
		g.refused(src, allowed)
		g.log.Debug("refused outbound TCP", "src", src, "dst", dst, "allowed", allowed)
		r.Complete(true)
		return
	}
	defer g.usage.releaseConn(src, bufs)
	if !g.usage.allowNewTCP(src) || g.usage.take(src, tcpHandshake) == 0 {
		// Dropped without a reset, as a full SYN queue drops it: a real
		// client sends its SYN again a second later, when a handshake
		// slot is likely free; a flooder never does.
		g.refused(src, true)
		g.log.Debug("dropped outbound TCP SYN: too many handshakes in progress", "src", src, "dst", dst)
		r.Complete(false)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	var d net.Dialer
	if a := g.outboundAddr(target.Addr()); a != nil {
		d.LocalAddr = &net.TCPAddr{IP: a}
	}
	host, err := d.DialContext(ctx, "tcp", target.String())
	cancel()
	if err != nil {
		g.usage.release(src, tcpHandshake)
		g.log.Debug("outbound TCP dial failed", "dst", target, "err", err)
		r.Complete(true)
		return
	}
	// The member's side of the handshake (CreateEndpoint waits for its
	// ACK) is part of the half-open time: a flooder that never answers
	// the SYN-ACK holds a host connection until gVisor gives up.
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	g.usage.release(src, tcpHandshake)
	if terr != nil {
		r.Complete(true)
		host.Close()
		return
	}
	r.Complete(false)
	forget := g.conns.add(src, func() { ep.Abort(); host.Close() })
	defer forget()
	if bufs == autotunedBuffers {
		relay.TCP(gonet.NewTCPConn(&wq, ep), host)
		return
	}
	ep.SocketOptions().SetReceiveBufferSize(fixedReceive, true)
	ep.SocketOptions().SetSendBufferSize(fixedSend, true)
	relay.TCPSmall(gonet.NewTCPConn(&wq, ep), host)
}

// forwardUDP runs on the packet path: it must not block.
func (g *Gateway) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	src := netipAddr(id.RemoteAddress)
	dst := netip.AddrPortFrom(netipAddr(id.LocalAddress), id.LocalPort)
	target, ok := g.hostTarget(src, dst)
	if !ok || g.usage.take(src, udpFlow) == 0 {
		g.refused(src, ok)
		g.log.Debug("refused outbound UDP", "src", src, "dst", dst, "allowed", ok)
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		g.usage.release(src, udpFlow)
		return false
	}
	inner := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer g.usage.release(src, udpFlow)
		var local *net.UDPAddr
		if a := g.outboundAddr(target.Addr()); a != nil {
			local = &net.UDPAddr{IP: a}
		}
		host, err := net.DialUDP("udp", local, net.UDPAddrFromAddrPort(target))
		if err != nil {
			g.log.Debug("outbound UDP dial failed", "dst", target, "err", err)
			inner.Close()
			return
		}
		idle := udpIdle
		if target.Port() == 53 {
			idle = dnsIdle
		}
		relay.UDPFlow(inner, host, idle)
	}()
	return true
}
