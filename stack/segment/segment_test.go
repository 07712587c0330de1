package segment

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	subnet  = netip.MustParsePrefix("10.77.0.0/24")
	gateway = netip.MustParseAddr("10.77.0.1")
	gwMAC   = net.HardwareAddr{0x02, 0x42, 10, 77, 0, 1}
	// upstreamIP is what the fake upstream resolver answers for every name.
	upstreamIP = netip.MustParseAddr("192.0.2.7")
)

// upstream is a DNS server on the host's loopback that answers every A
// query with upstreamIP, to tell forwarded answers from member answers.
func upstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: upstreamIP.AsSlice()}}
		w.WriteMsg(r)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func newSegment(t *testing.T, cfg Config) *Segment {
	t.Helper()
	cfg.Name = "testnet"
	cfg.Subnet, cfg.Gateway, cfg.GatewayMAC = subnet, gateway, gwMAC
	cfg.Upstreams = []netip.AddrPort{upstream(t)}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// fakeLink is a member's eth0 played by the test (an ethtest.Link).
type fakeLink struct {
	*ethtest.Link
	m Member
}

func attach(t *testing.T, s *Segment, host byte, name string, aliases ...string) *fakeLink {
	t.Helper()
	m := Member{
		ID:   name + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
		Name: name, Aliases: aliases,
		IP:  netip.AddrFrom4([4]byte{10, 77, 0, host}),
		MAC: net.HardwareAddr{0x02, 0x42, 10, 77, 0, host},
	}
	l, swEnd := ethtest.NewLink(t, m.MAC, m.IP)
	if err := s.Add(m, swEnd); err != nil {
		t.Fatal(err)
	}
	return &fakeLink{Link: l, m: m}
}

// lookup asks the segment's DNS (the gateway, port 53 over UDP) for name's
// A records, answering the gateway's ARP on the way as a kernel would.
func (l *fakeLink) lookup(name string) *dns.Msg {
	l.T.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		l.T.Fatal(err)
	}
	const port = 40000
	l.Send(ethtest.UDPFrame(gwMAC, l.m.MAC, l.m.IP, gateway, port, 53, wire))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f := l.Recv(time.Until(deadline))
		if f == nil {
			break
		}
		eth := header.Ethernet(f)
		switch eth.Type() {
		case header.ARPProtocolNumber:
			a := header.ARP(f[header.EthernetMinimumSize:])
			if a.Op() == header.ARPRequest && netip.AddrFrom4([4]byte(a.ProtocolAddressTarget())) == l.m.IP {
				l.Send(ethtest.ARPFrame(net.HardwareAddr(a.HardwareAddressSender()), header.ARPReply, l.m.MAC, l.m.IP,
					net.HardwareAddr(a.HardwareAddressSender()), netip.AddrFrom4([4]byte(a.ProtocolAddressSender()))))
			}
		case header.IPv4ProtocolNumber:
			ip := header.IPv4(f[header.EthernetMinimumSize:])
			if ip.Protocol() != uint8(header.UDPProtocolNumber) {
				continue
			}
			udp := header.UDP(ip.Payload())
			if udp.SourcePort() != 53 || udp.DestinationPort() != port {
				continue
			}
			r := new(dns.Msg)
			if err := r.Unpack(udp.Payload()); err != nil {
				l.T.Fatalf("%s: DNS reply: %v", l.m.Name, err)
			}
			return r
		}
	}
	l.T.Fatalf("%s: no DNS reply for %s", l.m.Name, name)
	return nil
}

// resolve is lookup's single A record, or the zero Addr for none.
func (l *fakeLink) resolve(name string) netip.Addr {
	l.T.Helper()
	r := l.lookup(name)
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A)
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "a", Subnet: subnet, Gateway: netip.MustParseAddr("10.78.0.1"), GatewayMAC: gwMAC},
		{Name: "b", Gateway: gateway, GatewayMAC: gwMAC},
		{Name: "c", Subnet: subnet, Gateway: gateway},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
}

func TestMemberNames(t *testing.T) {
	s := newSegment(t, Config{MemberNames: true})
	alpha := attach(t, s, 2, "alpha", "db")
	beta := attach(t, s, 3, "beta")

	for name, want := range map[string]netip.Addr{
		"beta":          beta.m.IP,
		"BETA.":         beta.m.IP, // case-insensitive
		"db":            alpha.m.IP,
		alpha.m.ID[:12]: alpha.m.IP,
		"example.com":   upstreamIP, // not a member: forwarded
		"alphabet":      upstreamIP,
	} {
		if got := beta.resolve(name); got != want {
			t.Errorf("resolve(%q) = %v, want %v", name, got, want)
		}
	}
	if got := alpha.resolve("beta"); got != beta.m.IP {
		t.Errorf("alpha resolves beta to %v, want %v", got, beta.m.IP)
	}
}

// The default bridge does not answer member names: they go upstream.
func TestNoMemberNames(t *testing.T) {
	s := newSegment(t, Config{})
	alpha := attach(t, s, 2, "alpha")
	attach(t, s, 3, "beta")
	for _, name := range []string{"beta", "alpha"} {
		if got := alpha.resolve(name); got != upstreamIP {
			t.Errorf("resolve(%q) = %v, want the upstream's %v", name, got, upstreamIP)
		}
	}
}

// An internal network answers member names and nothing else: no query
// leaves it.
func TestInternalAnswersOnlyMembers(t *testing.T) {
	s := newSegment(t, Config{MemberNames: true, Internal: true})
	alpha := attach(t, s, 2, "alpha")
	beta := attach(t, s, 3, "beta")
	if got := alpha.resolve("beta"); got != beta.m.IP {
		t.Errorf("resolve(beta) = %v, want %v", got, beta.m.IP)
	}
	r := alpha.lookup("example.com")
	if len(r.Answer) != 0 {
		t.Errorf("internal network answered example.com with %v", r.Answer)
	}
}

func TestRemove(t *testing.T) {
	s := newSegment(t, Config{MemberNames: true})
	alpha := attach(t, s, 2, "alpha")
	beta := attach(t, s, 3, "beta")
	s.Remove(beta.m.ID)
	beta.ExpectHangup()
	if got := alpha.resolve("beta"); got != upstreamIP {
		t.Errorf("after Remove, beta resolves to %v, want the upstream's %v", got, upstreamIP)
	}
	s.Remove(beta.m.ID) // removing twice is harmless
	// The address and MAC are free again.
	again := attach(t, s, 3, "beta")
	if got := alpha.resolve("beta"); got != again.m.IP {
		t.Errorf("re-added beta resolves to %v, want %v", got, again.m.IP)
	}
}

func TestCloseHangsUpMembers(t *testing.T) {
	cfg := Config{Name: "closing", Subnet: subnet, Gateway: gateway, GatewayMAC: gwMAC, MemberNames: true}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	alpha := attach(t, s, 2, "alpha")
	beta := attach(t, s, 3, "beta")
	s.Close()
	alpha.ExpectHangup()
	beta.ExpectHangup()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	if err := s.Add(Member{ID: "late", Name: "late", IP: netip.MustParseAddr("10.77.0.9"), MAC: net.HardwareAddr{2, 0x42, 10, 77, 0, 9}}, fds[0]); err == nil {
		t.Error("Add after Close succeeded")
	}
}

// TestAnswerAAAA: on a dual-stack segment a member's name has an AAAA
// record for its IPv6 address beside its A record; a member without one
// has the name and no AAAA (NOERROR, no answer).
func TestAnswerAAAA(t *testing.T) {
	s := newSegment(t, Config{MemberNames: true,
		Subnet6: netip.MustParsePrefix("fd77::/64"), Gateway6: netip.MustParseAddr("fd77::1")})
	web := Member{ID: "web0123456789abcdef", Name: "web", IP: netip.MustParseAddr("10.77.0.2"),
		IP6: netip.MustParseAddr("fd77::2"), MAC: net.HardwareAddr{0x02, 0x42, 10, 77, 0, 2}}
	_, swEnd := ethtest.NewLink(t, web.MAC, web.IP)
	if err := s.Add(web, swEnd); err != nil {
		t.Fatal(err)
	}
	attach(t, s, 3, "old")
	for _, c := range []struct {
		name  string
		qtype uint16
		want  string // the answer's data, "" for none
	}{
		{"web.", dns.TypeAAAA, "fd77::2"},
		{"WEB.", dns.TypeA, "10.77.0.2"},
		{"old.", dns.TypeAAAA, ""},
		{"old.", dns.TypeA, "10.77.0.3"},
	} {
		rrs, ok := s.answer(dns.Question{Name: c.name, Qtype: c.qtype, Qclass: dns.ClassINET})
		got := ""
		if len(rrs) == 1 {
			switch rr := rrs[0].(type) {
			case *dns.AAAA:
				got = rr.AAAA.String()
			case *dns.A:
				got = rr.A.String()
			}
		}
		if !ok || got != c.want || len(rrs) > 1 {
			t.Errorf("%s %s: %v (ok %v); want %q", c.name, dns.TypeToString[c.qtype], rrs, ok, c.want)
		}
	}
}
