package ethswitch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

var (
	gwMAC     = net.HardwareAddr{0x02, 0x42, 10, 9, 0, 1}
	gwIP      = netip.MustParseAddr("10.9.0.1")
	bcastMAC  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	strayMAC  = net.HardwareAddr{0x02, 0x42, 10, 9, 0, 99}
	testDebug = os.Getenv("ETHSWITCH_DEBUG") != ""
)

func memberMAC(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0x42, 10, 9, 0, byte(i)} }
func memberIP(i int) netip.Addr        { return netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}) }

func newSwitch(t testing.TB, opts Options) *Switch {
	t.Helper()
	if opts.GatewayMAC == nil {
		opts.GatewayMAC = gwMAC
	}
	if opts.MTU == 0 {
		opts.MTU = 65520
	}
	if !opts.GatewayIP.IsValid() {
		opts.GatewayIP = gwIP
	}
	if opts.Logger == nil {
		level := slog.LevelWarn
		if testDebug {
			level = slog.LevelDebug
		}
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// sockMember is a member whose "TAP" is a SOCK_SEQPACKET socketpair: the
// switch gets one end, the test plays the sandbox on the other (one frame
// per message, as on a TAP).
type sockMember struct {
	t   testing.TB
	mac net.HardwareAddr
	ip  netip.Addr
	fd  int // the sandbox end
	buf []byte
}

func seqpacketPair(t testing.TB) (sw, member int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		// Room for a few 64 KiB frames.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	return fds[0], fds[1]
}

func addSockMember(t testing.TB, s *Switch, i int) *sockMember {
	t.Helper()
	swEnd, mEnd := seqpacketPair(t)
	m := &sockMember{t: t, mac: memberMAC(i), ip: memberIP(i), fd: mEnd, buf: make([]byte, 1<<17)}
	if err := s.AddPort(Member{MAC: m.mac, IP: m.ip, FD: swEnd}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(mEnd) })
	return m
}

func (m *sockMember) send(frame []byte) {
	m.t.Helper()
	if _, err := unix.Write(m.fd, frame); err != nil {
		m.t.Fatalf("member %s: write: %v", m.mac, err)
	}
}

// recv returns the next frame within d, or nil.
func (m *sockMember) recv(d time.Duration) []byte {
	m.t.Helper()
	pfd := []unix.PollFd{{Fd: int32(m.fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left < 0 {
			return nil
		}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			m.t.Fatalf("poll: %v", err)
		}
		if n == 0 {
			return nil
		}
		break
	}
	n, err := unix.Read(m.fd, m.buf)
	if err != nil {
		m.t.Fatalf("member %s: read: %v", m.mac, err)
	}
	return append([]byte(nil), m.buf[:n]...)
}

// recvMatch returns the first frame within d for which ok is true,
// skipping others (e.g. gVisor's IPv6 chatter).
func (m *sockMember) recvMatch(d time.Duration, ok func([]byte) bool) []byte {
	m.t.Helper()
	deadline := time.Now().Add(d)
	for {
		f := m.recv(time.Until(deadline))
		if f == nil || ok(f) {
			return f
		}
	}
}

func (m *sockMember) expect(want []byte) {
	m.t.Helper()
	got := m.recv(2 * time.Second)
	if got == nil {
		m.t.Fatalf("member %s: no frame, want %d bytes", m.mac, len(want))
	}
	if !bytes.Equal(got, want) {
		m.t.Fatalf("member %s: got a different frame (%d bytes, want %d)", m.mac, len(got), len(want))
	}
}

func (m *sockMember) expectNothing(d time.Duration) {
	m.t.Helper()
	if f := m.recv(d); f != nil {
		m.t.Fatalf("member %s: unexpected frame of %d bytes: %x", m.mac, len(f), f[:min(len(f), 64)])
	}
}

// Frame builders.

func ethFrame(dst, src net.HardwareAddr, et tcpip.NetworkProtocolNumber, payload []byte) []byte {
	f := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(src), DstAddr: tcpip.LinkAddress(dst), Type: et})
	copy(f[header.EthernetMinimumSize:], payload)
	return f
}

func ipv4Packet(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, payload []byte) []byte {
	p := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(p)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(p)),
		TTL:         64,
		Protocol:    uint8(proto),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(p[header.IPv4MinimumSize:], payload)
	return p
}

func udpPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, header.UDPMinimumSize+len(payload))
	udp := header.UDP(u)
	udp.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	s, d := tcpip.AddrFrom4(src.As4()), tcpip.AddrFrom4(dst.As4())
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, s, d, uint16(len(u)))
	xsum = checksum.Checksum(payload, xsum)
	udp.SetChecksum(^udp.CalculateChecksum(xsum))
	return ipv4Packet(src, dst, header.UDPProtocolNumber, u)
}

func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return ethFrame(dstMAC, srcMAC, header.IPv4ProtocolNumber, udpPacket(src, dst, sport, dport, payload))
}

func arpFrame(dst net.HardwareAddr, op header.ARPOp, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	a := make([]byte, header.ARPSize)
	h := header.ARP(a)
	h.SetIPv4OverEthernet()
	h.SetOp(op)
	copy(h.HardwareAddressSender(), sha)
	copy(h.ProtocolAddressSender(), spa.AsSlice())
	copy(h.HardwareAddressTarget(), tha)
	copy(h.ProtocolAddressTarget(), tpa.AsSlice())
	return ethFrame(dst, sha, header.ARPProtocolNumber, a)
}

func echoFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	b := make([]byte, header.ICMPv4MinimumSize+len(data))
	icmp := header.ICMPv4(b)
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(id)
	icmp.SetSequence(seq)
	copy(icmp.Payload(), data)
	icmp.SetChecksum(^checksum.Checksum(b, 0))
	return ethFrame(dstMAC, srcMAC, header.IPv4ProtocolNumber, ipv4Packet(src, dst, header.ICMPv4ProtocolNumber, b))
}

func ipv6Frame(dst, src net.HardwareAddr, srcIP, dstIP netip.Addr, nh uint8, payload []byte) []byte {
	p := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(p).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(payload)),
		TransportProtocol: tcpip.TransportProtocolNumber(nh),
		HopLimit:          255,
		SrcAddr:           tcpip.AddrFrom16(srcIP.As16()),
		DstAddr:           tcpip.AddrFrom16(dstIP.As16()),
	})
	copy(p[header.IPv6MinimumSize:], payload)
	return ethFrame(dst, src, header.IPv6ProtocolNumber, p)
}

func etherType(f []byte) tcpip.NetworkProtocolNumber {
	if len(f) < 14 {
		return 0
	}
	return tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(f[12:14]))
}

// fakeDispatcher records what the switch delivers to the gateway.
type fakeDispatcher struct {
	mu   sync.Mutex
	pkts [][]byte // the whole frame, link header included
	c    chan struct{}
}

func attachFake(s *Switch) *fakeDispatcher {
	d := &fakeDispatcher{c: make(chan struct{}, 1024)}
	s.GatewayEndpoint().Attach(d)
	return d
}

func (d *fakeDispatcher) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	var b []byte
	b = append(b, pkt.LinkHeader().Slice()...)
	b = append(b, pkt.Data().AsRange().ToSlice()...)
	if etherType(b) != proto || pkt.NetworkProtocolNumber != proto {
		panic(fmt.Sprintf("protocol %d, frame says %d", proto, etherType(b)))
	}
	d.mu.Lock()
	d.pkts = append(d.pkts, b)
	d.mu.Unlock()
	d.c <- struct{}{}
}

func (*fakeDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (d *fakeDispatcher) expect(t testing.TB, want []byte) {
	t.Helper()
	select {
	case <-d.c:
	case <-time.After(2 * time.Second):
		t.Fatalf("gateway: no frame, want %d bytes", len(want))
	}
	d.mu.Lock()
	got := d.pkts[0]
	d.pkts = d.pkts[1:]
	d.mu.Unlock()
	if !bytes.Equal(got, want) {
		t.Fatalf("gateway: got a different frame (%d bytes, want %d)", len(got), len(want))
	}
}

func (d *fakeDispatcher) expectNothing(t testing.TB, wait time.Duration) {
	t.Helper()
	select {
	case <-d.c:
		t.Fatalf("gateway: unexpected frame %x", d.pkts[0][:min(64, len(d.pkts[0]))])
	case <-time.After(wait):
	}
}

// waitDrop waits until the switch has counted n drops for reason.
func waitDrop(t testing.TB, s *Switch, reason string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got := s.Stats().Drops[reason]
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("drops[%q] = %d, want %d (all: %v)", reason, got, n, s.Stats().Drops)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
