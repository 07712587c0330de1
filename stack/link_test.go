package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// FuzzLinkWatcherParsers feeds the link watcher's parsers whatever a
// hostile member could send as a frame: they must never panic, and what
// they take must be a well-formed echo request or TCP SYN.
func FuzzLinkWatcherParsers(f *testing.F) {
	for _, c := range []struct{ src, dst string }{{"10.0.2.100", "198.51.100.2"}, {"fd00::42:aff:fe00:264", "2001:db8::2"}} {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		pkt := echoPacket(f, src, dst, 1, 2, []byte("seed"), false)
		f.Add(append(append([]byte{}, pkt.LinkHeader().Slice()...), pkt.Data().AsRange().ToSlice()...))
		f.Add(tcpFrame(netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(dst, 80), header.TCPFlagSyn))
	}
	f.Add(make([]byte, 14))
	f.Fuzz(func(t *testing.T, frame []byte) {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		defer pkt.DecRef()
		if _, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
			return
		}
		isRouterSolicitation(pkt)
		for _, parse := range []func(*gstack.PacketBuffer) (echoRequest, bool){parseEcho4, parseEcho6} {
			req, ok := parse(pkt)
			if !ok {
				continue
			}
			if len(req.data) > maxEchoPayload || !req.key.member.IsValid() || !req.key.dst.IsValid() || len(req.memberMAC) != 6 {
				t.Errorf("took a malformed echo request: %+v", req)
			}
		}
		for _, v6 := range []bool{false, true} {
			src, dst, ok := parseFrame(frame, v6)
			if !ok {
				continue
			}
			if !src.IsValid() || !dst.IsValid() || !isSYN(frame[header.EthernetMinimumSize:], v6) {
				t.Errorf("took %x (IPv6 %v) for a SYN from %s to %s", frame, v6, src, dst)
			}
		}
	})
}

// isSYN is gVisor's reading of ip: a TCP SYN without ACK, its header whole
// inside the IP packet.
func isSYN(ip []byte, v6 bool) bool {
	var payload []byte
	var proto uint8
	if v6 {
		h := header.IPv6(ip)
		if !h.IsValid(len(ip)) {
			return false
		}
		payload, proto = h.Payload(), uint8(h.TransportProtocol())
	} else {
		h := header.IPv4(ip)
		if !h.IsValid(len(ip)) {
			return false
		}
		payload, proto = h.Payload(), h.Protocol()
	}
	tcp := header.TCP(payload)
	return proto == uint8(header.TCPProtocolNumber) && len(tcp) >= header.TCPMinimumSize &&
		tcp.Flags()&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn
}
