package stack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	xipv4 "golang.org/x/net/ipv4"
	xipv6 "golang.org/x/net/ipv6"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Ping past the gateway, as slirp4netns and pasta do it: an echo request
// to a host outside the segment is sent again from an unprivileged ICMP
// socket of the host (SOCK_DGRAM with IPPROTO_ICMP or IPPROTO_ICMPV6, which
// net.ipv4.ping_group_range must allow for the user's group), and each
// reply is written back to the member as if the destination had answered.
// The kernel gives every such socket an echo identifier of its own, so one
// socket per (member, destination, identifier) keeps flows apart and maps
// replies back. Echo requests to the gateway's own addresses stay with
// gVisor, which answers them.

const (
	// maxEchoFlows bounds the sockets one segment's pings hold.
	maxEchoFlows = 256
	// echoIdle closes a flow this long after its last request.
	echoIdle = 10 * time.Second
	// maxEchoPayload is the most a reply may carry back: an echo request
	// is copied, never held by reference, and 64 KiB covers ping -s.
	maxEchoPayload = 65507
)

type echoKey struct {
	member, dst netip.Addr
	id          uint16
}

type pinger struct {
	g      *Gateway
	mac    tcpip.LinkAddress // the gateway's, the source of every reply
	mu     sync.Mutex
	flows  map[echoKey]*echoFlow
	closed bool
	warned atomic.Bool // the missing ping_group_range is said once
}

func newPinger(g *Gateway, mac tcpip.LinkAddress) *pinger {
	return &pinger{g: g, mac: mac, flows: make(map[echoKey]*echoFlow)}
}

// echoRequest is what take reads off a member's packet.
type echoRequest struct {
	key       echoKey
	memberMAC tcpip.LinkAddress
	seq       uint16
	data      []byte
}

// take reports whether pkt is an echo request for a host past the gateway,
// which it then sends on (or drops, where the policy or the host refuses):
// either way the stack must not see it.
func (p *pinger) take(pkt *gstack.PacketBuffer, v6 bool) bool {
	var req echoRequest
	var ok bool
	if v6 {
		req, ok = parseEcho6(pkt)
	} else {
		req, ok = parseEcho4(pkt)
	}
	if !ok || p.g.ownAddr(req.key.dst) {
		return false
	}
	if target, allowed := p.g.hostTarget(req.key.member, netip.AddrPortFrom(req.key.dst, 0)); !allowed || target.Addr() != req.key.dst {
		p.g.log.Debug("refused echo request", "src", req.key.member, "dst", req.key.dst)
		return true
	}
	f, err := p.flow(req)
	if err != nil {
		p.refused(err)
		return true
	}
	f.send(req)
	return true
}

func (p *pinger) refused(err error) {
	if errors.Is(err, os.ErrPermission) && !p.warned.Swap(true) {
		p.g.log.Warn("ping from the sandbox is not forwarded: this user's group may not open ICMP sockets; allow it with sysctl -w net.ipv4.ping_group_range='0 2147483647'", "gid", os.Getgid())
		return
	}
	p.g.log.Debug("echo request not forwarded", "err", err)
}

// flow finds or opens the socket for req's flow.
func (p *pinger) flow(req echoRequest) (*echoFlow, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	if f := p.flows[req.key]; f != nil {
		return f, nil
	}
	if len(p.flows) >= maxEchoFlows {
		return nil, errors.New("too many ping flows")
	}
	network, local := "udp4", "0.0.0.0"
	if req.key.dst.Is6() {
		network, local = "udp6", "::"
	}
	if a := p.g.outboundAddr(req.key.dst); a != nil {
		local = a.String()
	}
	conn, err := icmp.ListenPacket(network, local)
	if err != nil {
		return nil, err
	}
	f := &echoFlow{p: p, key: req.key, memberMAC: req.memberMAC, conn: conn}
	f.touch()
	p.flows[req.key] = f
	go f.readReplies()
	return f, nil
}

func (p *pinger) forget(f *echoFlow) {
	p.mu.Lock()
	if p.flows[f.key] == f {
		delete(p.flows, f.key)
	}
	p.mu.Unlock()
}

func (p *pinger) close() {
	p.mu.Lock()
	p.closed = true
	for _, f := range p.flows {
		f.conn.Close()
	}
	p.mu.Unlock()
}

// echoFlow is one member's pings to one destination with one identifier.
type echoFlow struct {
	p         *pinger
	key       echoKey
	memberMAC tcpip.LinkAddress
	conn      *icmp.PacketConn
	last      atomic.Int64 // unix nanoseconds of the last request
}

func (f *echoFlow) touch() { f.last.Store(time.Now().UnixNano()) }

func (f *echoFlow) send(req echoRequest) {
	f.touch()
	var typ icmp.Type = xipv4.ICMPTypeEcho
	if f.key.dst.Is6() {
		typ = xipv6.ICMPTypeEchoRequest
	}
	// The kernel sets the identifier (the socket's) and, for ICMPv6, the
	// checksum.
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{Seq: int(req.seq), Data: req.data}}
	b, err := msg.Marshal(nil)
	if err == nil {
		_, err = f.conn.WriteTo(b, &net.UDPAddr{IP: f.key.dst.AsSlice()})
	}
	if err != nil {
		f.p.g.log.Debug("echo request not sent", "dst", f.key.dst, "err", err)
	}
}

// readReplies writes each echo reply back to the member until the flow
// has been idle for echoIdle.
func (f *echoFlow) readReplies() {
	defer f.p.forget(f)
	defer f.conn.Close()
	icmpProto, reply := 1, icmp.Type(xipv4.ICMPTypeEchoReply)
	if f.key.dst.Is6() {
		icmpProto, reply = 58, xipv6.ICMPTypeEchoReply
	}
	buf := make([]byte, maxEchoPayload+header.ICMPv4MinimumSize)
	for {
		f.conn.SetReadDeadline(time.Unix(0, f.last.Load()).Add(echoIdle))
		n, from, err := f.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, f.last.Load())) < echoIdle {
				continue
			}
			return
		}
		if ua, ok := from.(*net.UDPAddr); !ok || !ua.IP.Equal(f.key.dst.AsSlice()) {
			continue
		}
		m, err := icmp.ParseMessage(icmpProto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok {
			continue
		}
		f.p.g.s.WriteRawPacket(nicID, proto(f.key.dst), buffer.MakeWithData(f.replyFrame(uint16(echo.Seq), echo.Data)))
	}
}

// replyFrame is the echo reply, from the destination to the member, with
// the identifier the member chose.
func (f *echoFlow) replyFrame(seq uint16, data []byte) []byte {
	v6 := f.key.dst.Is6()
	ipLen := header.IPv4MinimumSize
	ethType := header.IPv4ProtocolNumber
	if v6 {
		ipLen, ethType = header.IPv6MinimumSize, header.IPv6ProtocolNumber
	}
	icmpLen := header.ICMPv4MinimumSize + len(data) // the same 8 bytes for ICMPv6
	frame := make([]byte, header.EthernetMinimumSize+ipLen+icmpLen)
	header.Ethernet(frame).Encode(&header.EthernetFields{SrcAddr: f.p.mac, DstAddr: f.memberMAC, Type: ethType})
	src, dst := addr(f.key.dst), addr(f.key.member)
	msg := frame[header.EthernetMinimumSize+ipLen:]
	copy(msg[header.ICMPv4MinimumSize:], data)
	if v6 {
		header.IPv6(frame[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
			PayloadLength: uint16(icmpLen), TransportProtocol: header.ICMPv6ProtocolNumber,
			HopLimit: 64, SrcAddr: src, DstAddr: dst,
		})
		h := header.ICMPv6(msg)
		h.SetType(header.ICMPv6EchoReply)
		h.SetIdent(f.key.id)
		h.SetSequence(seq)
		h.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: h, Src: src, Dst: dst}))
		return frame
	}
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(ipLen + icmpLen), TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: src, DstAddr: dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	h := header.ICMPv4(msg)
	h.SetType(header.ICMPv4EchoReply)
	h.SetIdent(f.key.id)
	h.SetSequence(seq)
	h.SetChecksum(^checksum.Checksum(h, 0))
	return frame
}

// parseEcho4 reads an ICMP echo request in an unfragmented IPv4 packet
// with a valid ICMP checksum.
func parseEcho4(pkt *gstack.PacketBuffer) (echoRequest, bool) {
	b, ok := pkt.Data().PullUp(header.IPv4MinimumSize)
	if !ok || header.IPv4(b).Protocol() != uint8(header.ICMPv4ProtocolNumber) {
		return echoRequest{}, false
	}
	b, ok = pkt.Data().PullUp(pkt.Data().Size())
	ip := header.IPv4(b)
	if !ok || !ip.IsValid(len(b)) || ip.More() || ip.FragmentOffset() != 0 {
		return echoRequest{}, false
	}
	msg := header.ICMPv4(ip.Payload())
	if len(msg) < header.ICMPv4MinimumSize || msg.Type() != header.ICMPv4Echo || msg.Code() != 0 || checksum.Checksum(msg, 0) != 0xffff {
		return echoRequest{}, false
	}
	return newEchoRequest(pkt, ip.SourceAddress(), ip.DestinationAddress(), msg.Ident(), msg.Sequence(), msg.Payload())
}

// parseEcho6 reads an ICMPv6 echo request right after the IPv6 header,
// with a valid checksum.
func parseEcho6(pkt *gstack.PacketBuffer) (echoRequest, bool) {
	b, ok := pkt.Data().PullUp(header.IPv6MinimumSize)
	if !ok || header.IPv6(b).TransportProtocol() != header.ICMPv6ProtocolNumber {
		return echoRequest{}, false
	}
	b, ok = pkt.Data().PullUp(pkt.Data().Size())
	ip := header.IPv6(b)
	if !ok || !ip.IsValid(len(b)) {
		return echoRequest{}, false
	}
	msg := header.ICMPv6(ip.Payload())
	if len(msg) < header.ICMPv6EchoMinimumSize || msg.Type() != header.ICMPv6EchoRequest || msg.Code() != 0 ||
		msg.Checksum() != header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: msg, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()}) {
		return echoRequest{}, false
	}
	return newEchoRequest(pkt, ip.SourceAddress(), ip.DestinationAddress(), msg.Ident(), msg.Sequence(), msg.Payload())
}

func newEchoRequest(pkt *gstack.PacketBuffer, src, dst tcpip.Address, id, seq uint16, payload []byte) (echoRequest, bool) {
	eth := header.Ethernet(pkt.LinkHeader().Slice())
	if len(eth) < header.EthernetMinimumSize || len(payload) > maxEchoPayload {
		return echoRequest{}, false
	}
	return echoRequest{
		key:       echoKey{member: netipAddr(src), dst: netipAddr(dst), id: id},
		memberMAC: eth.SourceAddress(),
		seq:       seq,
		data:      append([]byte(nil), payload...),
	}, true
}

// ownAddr reports whether a is one of the gateway's own addresses, which
// the stack answers itself.
func (g *Gateway) ownAddr(a netip.Addr) bool {
	if a == g.cfg.Gateway || a == g.cfg.Resolver {
		return true
	}
	if v6 := g.cfg.IPv6; v6 != nil {
		return a == v6.Gateway || a == v6.Resolver || a.IsLinkLocalUnicast()
	}
	return false
}
