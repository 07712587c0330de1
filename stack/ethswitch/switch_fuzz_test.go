package ethswitch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The fuzzed member is member 2 (with an IPv6 address); 3 and 4 are its
// victims, each behind an ethtest.Link.
const fuzzMTU = 1500

// countingDispatcher keeps what the switch delivers to the gateway.
type countingDispatcher struct {
	mu     sync.Mutex
	frames [][]byte
}

func (d *countingDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	b := append(append([]byte(nil), pkt.LinkHeader().Slice()...), pkt.Data().AsRange().ToSlice()...)
	d.mu.Lock()
	d.frames = append(d.frames, b)
	d.mu.Unlock()
}

func (*countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (d *countingDispatcher) take() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.frames
	d.frames = nil
	return f
}

// fuzzSegment is a switch with the fuzzed member, its victims, a gateway
// and a DHCP hook that always answers.
type fuzzSegment struct {
	sw        *Switch
	attacker  *port
	self      *ethtest.Link // the fuzzed member's own end, for DHCP replies
	victims   []*ethtest.Link
	gw        *countingDispatcher
	dhcpCalls int
}

func newFuzzSegment(f *testing.F, isolate bool) *fuzzSegment {
	seg := &fuzzSegment{gw: &countingDispatcher{}}
	seg.sw = newSwitch(f, Options{
		MTU: fuzzMTU, Isolate: isolate, Logger: slog.New(slog.DiscardHandler),
		DHCP: func(req []byte, m Member) ([]byte, bool) {
			seg.dhcpCalls++
			return make([]byte, bootpMinLen+60), true
		},
	})
	seg.sw.GatewayEndpoint().Attach(seg.gw)
	for i := 2; i <= 4; i++ {
		l, swEnd := ethtest.NewLink(f, memberMAC(i), memberIP(i))
		m := Member{MAC: l.MAC, IP: l.IP, FD: swEnd}
		if i != 4 {
			m.IP6 = memberIP6(i)
		}
		if err := seg.sw.AddPort(m); err != nil {
			f.Fatal(err)
		}
		if i == 2 {
			seg.self = l
		} else {
			seg.victims = append(seg.victims, l)
		}
	}
	seg.attacker = seg.sw.tbl.Load().byMAC[[6]byte(memberMAC(2))]
	return seg
}

// FuzzMemberFrame hands frames from a member to the switch's check and
// forward (port.handle, as the member's reader does): no frame the
// anti-spoofing rules forbid reaches another member or the gateway, what
// goes out is the frame as it came, and each frame has exactly one fate,
// counted: dropped (with a reason), answered by DHCP, delivered to the
// gateway (and, for a group address, to every other member unless
// isolated) or delivered to the one member it is addressed to.
func FuzzMemberFrame(f *testing.F) {
	a, b := memberMAC(2), memberMAC(3)
	allNodes := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	for _, frame := range [][]byte{
		ethtest.UDPFrame(b, a, memberIP(2), memberIP(3), 1000, 2000, payload(20)),
		ethtest.UDPFrame(bcastMAC, a, memberIP(2), netip.MustParseAddr("255.255.255.255"), 1, 2, payload(8)),
		ethtest.UDPFrame(gwMAC, a, memberIP(2), netip.MustParseAddr("198.51.100.1"), 1, 53, payload(30)),
		ethtest.UDPFrame(bcastMAC, a, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67, payload(300)),
		ethtest.UDPFrame(b, a, memberIP(4), memberIP(3), 1, 2, nil), // another member's source
		ethtest.UDPFrame(b, strayMAC, memberIP(2), memberIP(3), 1, 2, nil),
		ethtest.ARPFrame(bcastMAC, header.ARPRequest, a, memberIP(2), make(net.HardwareAddr, 6), memberIP(3)),
		ethtest.ARPFrame(b, header.ARPReply, a, gwIP, b, memberIP(3)), // claims the gateway
		ethtest.IPv6Frame(allNodes, a, memberIP6(2), netip.MustParseAddr("ff02::1"), 17, payload(24)),
		ethtest.IPv6Frame(b, a, memberLL(2), memberLL(3), 17, payload(4)),
		icmp6Frame(b, a, memberIP6(2), memberIP6(3), header.ICMPv6NeighborAdvert, ndBody(0x40000000, memberIP6(3), 2, a)),
		icmp6Frame(allNodes, a, memberLL(2), netip.MustParseAddr("ff02::1"), header.ICMPv6RouterAdvert, make([]byte, 12)),
		ethtest.EthFrame(b, a, 0x8100, payload(40)), // VLAN tag
		make([]byte, 13),
	} {
		f.Add(frame, false)
		f.Add(frame, true)
	}

	segs := map[bool]*fuzzSegment{false: newFuzzSegment(f, false), true: newFuzzSegment(f, true)}
	f.Fuzz(func(t *testing.T, frame []byte, isolate bool) {
		seg := segs[isolate]
		if len(frame) > seg.sw.frameMax {
			return // the reader drops it before handle, as oversize
		}
		dropsBefore, dhcpBefore := seg.attacker.cnt.dropsTotal(), seg.dhcpCalls
		v := buffer.NewViewSize(seg.sw.bufSize)
		n := copy(v.AsSlice(), frame)
		if !seg.attacker.handle(v.AsSlice()[:n], v) {
			v.Release()
		}
		dropped := seg.attacker.cnt.dropsTotal() - dropsBefore
		dhcp := seg.dhcpCalls - dhcpBefore
		toGateway := seg.gw.take()
		toVictims := make([][][]byte, len(seg.victims))
		for i, l := range seg.victims {
			toVictims[i] = drain(t, l)
		}
		toSelf := drain(t, seg.self)

		var forwarded [][]byte
		forwarded = append(forwarded, toGateway...)
		reached := 0
		for _, fs := range toVictims {
			forwarded = append(forwarded, fs...)
			if len(fs) > 1 {
				t.Fatalf("a victim got %d copies of one frame", len(fs))
			}
			reached += len(fs)
		}
		for _, out := range forwarded {
			if !bytes.Equal(out, frame) {
				t.Fatalf("frame %x went out as %x", frame, out)
			}
		}
		if len(forwarded) > 0 || dhcp > 0 {
			if why := forbidden(frame); why != "" {
				t.Fatalf("frame %x (%s) was forwarded (%d copies) or served by DHCP (%d)", frame, why, len(forwarded), dhcp)
			}
		}

		// Exactly one fate per frame.
		multicast := len(frame) >= ethHdrLen && frame[0]&1 != 0
		switch {
		case dropped == 1 && dhcp == 0 && len(forwarded) == 0:
		case dhcp == 1 && dropped == 0 && len(forwarded) == 0 && len(toSelf) == 1:
		case len(toGateway) == 1 && dropped == 0 && dhcp == 0:
			want := 0
			if multicast && !isolate {
				want = len(seg.victims)
			}
			if reached != want {
				t.Fatalf("frame %x: to the gateway and %d members, want %d", frame, reached, want)
			}
		case len(toGateway) == 0 && reached == 1 && dropped == 0 && dhcp == 0 && !multicast && !isolate:
			for i, l := range seg.victims {
				if len(toVictims[i]) == 1 && !bytes.Equal(frame[0:6], l.MAC) {
					t.Fatalf("frame %x for %s reached member %s", frame, net.HardwareAddr(frame[0:6]), l.MAC)
				}
			}
		default:
			t.Fatalf("frame %x: %d drops counted, %d DHCP, %d to the gateway, %d to members, %d back to the sender: want exactly one fate",
				frame, dropped, dhcp, len(toGateway), reached, len(toSelf))
		}
		if dhcp == 0 && len(toSelf) != 0 {
			t.Fatalf("frame %x came back to its sender", frame)
		}
	})
}

func (c *counters) dropsTotal() uint64 {
	var n uint64
	for i := range c.drops {
		n += c.drops[i].Load()
	}
	return n
}

// drain returns the frames waiting at a member's end; the switch's writes
// are done when handle returns.
func drain(t *testing.T, l *ethtest.Link) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(l.FD, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatalf("member %s: read: %v", l.MAC, err)
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
}

// forbidden says why the anti-spoofing rules forbid frame from member 2,
// or "" when they allow it; written apart from the switch's own checks,
// as the rules read.
func forbidden(frame []byte) string {
	if len(frame) < ethHdrLen {
		return "runt"
	}
	if !bytes.Equal(frame[6:12], memberMAC(2)) {
		return "source MAC not its own"
	}
	l3 := frame[ethHdrLen:]
	own4 := memberIP(2).As4()
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case etherIPv4:
		if len(l3) < 20 {
			return "short IPv4"
		}
		src := [4]byte(l3[12:16])
		if src == own4 {
			return ""
		}
		ihl := int(l3[0]&0x0f) * 4
		if src == [4]byte{} && l3[9] == 17 && ihl >= 20 && len(l3) >= ihl+4 &&
			binary.BigEndian.Uint16(l3[ihl:]) == 68 && binary.BigEndian.Uint16(l3[ihl+2:]) == 67 {
			return ""
		}
		return fmt.Sprintf("IPv4 source %v", netip.AddrFrom4(src))
	case etherARP:
		if len(l3) < 28 {
			return "short ARP"
		}
		if !bytes.Equal(l3[8:14], memberMAC(2)) {
			return "ARP sender MAC not its own"
		}
		if spa := [4]byte(l3[14:18]); spa != own4 && spa != [4]byte{} {
			return fmt.Sprintf("ARP sender %v", netip.AddrFrom4(spa))
		}
		return ""
	case etherIPv6:
		if len(l3) < 40 {
			return "short IPv6"
		}
		src := netip.AddrFrom16([16]byte(l3[8:24]))
		if src != memberIP6(2) && src != memberLL(2) && !src.IsUnspecified() {
			return fmt.Sprintf("IPv6 source %v", src)
		}
		if l3[6] == 58 && len(l3) > 40 {
			switch header.ICMPv6Type(l3[40]) {
			case header.ICMPv6RouterAdvert, header.ICMPv6RedirectMsg:
				return "router advertisement or redirect"
			case header.ICMPv6NeighborAdvert:
				if len(l3) >= 40+24 {
					if t := netip.AddrFrom16([16]byte(l3[48:64])); t != memberIP6(2) && t != memberLL(2) {
						return fmt.Sprintf("neighbour advertisement for %v", t)
					}
				}
			}
		}
		return ""
	}
	return fmt.Sprintf("ethertype %#04x", binary.BigEndian.Uint16(frame[12:14]))
}
