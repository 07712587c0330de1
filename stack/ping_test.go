package stack

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	memberMAC  = tcpip.LinkAddress("\x02\x42\x0a\x00\x02\x64")
	gatewayMAC = tcpip.LinkAddress("\x02\x42\x0a\x00\x02\x02")
)

// echoPacket is a member's echo request as the link hands it to the stack:
// the Ethernet header consumed, the IP packet as data.
func echoPacket(t testing.TB, src, dst netip.Addr, id, seq uint16, data []byte, badChecksum bool) *gstack.PacketBuffer {
	t.Helper()
	f := &echoFlow{p: &pinger{mac: memberMAC}, key: echoKey{member: dst, dst: src, id: id}, memberMAC: gatewayMAC}
	// A reply from dst to src has the shape of a request from src to dst:
	// only the type differs (and so the checksum).
	frame := f.replyFrame(seq, data)
	ipStart := header.EthernetMinimumSize
	var msg []byte
	if src.Is6() {
		msg = frame[ipStart+header.IPv6MinimumSize:]
		h := header.ICMPv6(msg)
		h.SetType(header.ICMPv6EchoRequest)
		h.SetChecksum(0)
		h.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: h, Src: addr(src), Dst: addr(dst)}))
	} else {
		msg = frame[ipStart+header.IPv4MinimumSize:]
		h := header.ICMPv4(msg)
		h.SetType(header.ICMPv4Echo)
		h.SetChecksum(0)
		h.SetChecksum(^checksum.Checksum(h, 0))
	}
	if badChecksum {
		msg[2] ^= 0xff
	}
	pkt := linkPacket(frame)
	t.Cleanup(pkt.DecRef)
	return pkt
}

func TestEchoRoundTrip(t *testing.T) {
	data := []byte("ping payload 0123456789")
	for _, c := range []struct{ member, dst string }{
		{"10.0.2.100", "198.51.100.2"},
		{"fd00::42:aff:fe00:264", "2001:db8::2"},
	} {
		member, dst := netip.MustParseAddr(c.member), netip.MustParseAddr(c.dst)
		v6 := member.Is6()
		parse := parseEcho4
		if v6 {
			parse = parseEcho6
		}
		req, ok := parse(echoPacket(t, member, dst, 0x1234, 7, data, false))
		if !ok {
			t.Fatalf("%s -> %s: the echo request was not recognised", member, dst)
		}
		if req.key != (echoKey{member: member, dst: dst, id: 0x1234}) || req.seq != 7 || string(req.data) != string(data) || req.memberMAC != memberMAC {
			t.Errorf("%s -> %s: parsed %+v", member, dst, req)
		}
		if _, ok := parse(echoPacket(t, member, dst, 0x1234, 7, data, true)); ok {
			t.Errorf("%s -> %s: an echo request with a bad checksum was taken", member, dst)
		}

		f := &echoFlow{p: &pinger{mac: gatewayMAC}, key: req.key, memberMAC: req.memberMAC}
		frame := f.replyFrame(9, data)
		eth := header.Ethernet(frame)
		if eth.SourceAddress() != gatewayMAC || eth.DestinationAddress() != memberMAC {
			t.Errorf("reply Ethernet header: %s -> %s", eth.SourceAddress(), eth.DestinationAddress())
		}
		if v6 {
			ip := header.IPv6(frame[header.EthernetMinimumSize:])
			h := header.ICMPv6(ip.Payload())
			if !ip.IsValid(len(ip)) || ip.SourceAddress() != addr(dst) || ip.DestinationAddress() != addr(member) ||
				h.Type() != header.ICMPv6EchoReply || h.Ident() != 0x1234 || h.Sequence() != 9 || string(h.Payload()) != string(data) ||
				h.Checksum() != header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: h, Src: addr(dst), Dst: addr(member)}) {
				t.Errorf("IPv6 reply: %x", frame)
			}
			continue
		}
		ip := header.IPv4(frame[header.EthernetMinimumSize:])
		h := header.ICMPv4(ip.Payload())
		if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || ip.SourceAddress() != addr(dst) || ip.DestinationAddress() != addr(member) ||
			h.Type() != header.ICMPv4EchoReply || h.Ident() != 0x1234 || h.Sequence() != 9 || string(h.Payload()) != string(data) ||
			checksum.Checksum(h, 0) != 0xffff {
			t.Errorf("IPv4 reply: %x", frame)
		}
	}
}

// TestEchoPolicy: what take sends on, leaves to the stack, or drops.
func TestEchoPolicy(t *testing.T) {
	g := testGateway6(false)
	g.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	p := newPinger(g, gatewayMAC)
	p.closed = true // no socket is opened: a taken request fails at the flow
	member := netip.MustParseAddr("10.0.2.100")
	for dst, taken := range map[string]bool{
		"10.0.2.2":        false, // the gateway answers itself
		"10.0.2.3":        false,
		"10.0.2.7":        true, // the segment's: dropped, never sent from the host
		"127.0.0.1":       true,
		"255.255.255.255": true,
		"198.51.100.2":    true,
	} {
		if got := p.take(echoPacket(t, member, netip.MustParseAddr(dst), 1, 1, nil, false), false); got != taken {
			t.Errorf("echo request to %s: taken %v, want %v", dst, got, taken)
		}
	}
	member6 := netip.MustParseAddr("fd00::42:aff:fe00:264")
	for dst, taken := range map[string]bool{
		"fd00::2":     false,
		"fd00::3":     false,
		"fe80::1":     false,
		"fd00::9":     true,
		"::1":         true,
		"2001:db8::2": true,
	} {
		if got := p.take(echoPacket(t, member6, netip.MustParseAddr(dst), 1, 1, nil, false), true); got != taken {
			t.Errorf("echo request to %s: taken %v, want %v", dst, got, taken)
		}
	}
}
