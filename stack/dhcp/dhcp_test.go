package dhcp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var (
	mac    = net.HardwareAddr{0x02, 0x42, 10, 9, 0, 2}
	other  = net.HardwareAddr{0x02, 0x42, 10, 9, 0, 3}
	member = netip.MustParseAddr("10.9.0.2")
)

func testServer() *Server {
	return New(Config{
		ServerIP:  netip.MustParseAddr("10.9.0.1"),
		Router:    netip.MustParseAddr("10.9.0.1"),
		Subnet:    netip.MustParsePrefix("10.9.0.0/24"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("1.1.1.1")},
		Domain:    "seg.test",
		LeaseTime: 2 * time.Hour,
		MTU:       65520,
	})
}

func respond(t *testing.T, s *Server, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	b, ok := s.Respond(req.ToBytes(), mac, member)
	if !ok {
		t.Fatalf("no reply to %s", req.MessageType())
	}
	r, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != req.TransactionID || r.ClientHWAddr.String() != mac.String() {
		t.Fatalf("reply header: %s", r.Summary())
	}
	return r
}

func wantIP(t *testing.T, what string, got net.IP, want string) {
	t.Helper()
	if !got.Equal(net.ParseIP(want)) {
		t.Errorf("%s = %v, want %s", what, got, want)
	}
}

func checkConfig(t *testing.T, r *dhcpv4.DHCPv4, lease bool) {
	t.Helper()
	if got := net.IP(r.SubnetMask()).String(); got != "255.255.255.0" {
		t.Errorf("mask = %s", got)
	}
	wantIP(t, "broadcast", r.BroadcastAddress(), "10.9.0.255")
	if rt := r.Router(); len(rt) != 1 {
		t.Errorf("router = %v", rt)
	} else {
		wantIP(t, "router", rt[0], "10.9.0.1")
	}
	if d := r.DNS(); len(d) != 2 || !d[0].Equal(net.ParseIP("10.9.0.1")) || !d[1].Equal(net.ParseIP("1.1.1.1")) {
		t.Errorf("dns = %v", d)
	}
	if r.DomainName() != "seg.test" {
		t.Errorf("domain = %q", r.DomainName())
	}
	if b := r.Options.Get(dhcpv4.OptionInterfaceMTU); len(b) != 2 || int(b[0])<<8|int(b[1]) != 65520 {
		t.Errorf("mtu option = %v", b)
	}
	wantIP(t, "server identifier", r.ServerIdentifier(), "10.9.0.1")
	if lease {
		if d := r.IPAddressLeaseTime(0); d != 2*time.Hour {
			t.Errorf("lease = %v", d)
		}
		if d := r.IPAddressRenewalTime(0); d != time.Hour {
			t.Errorf("T1 = %v", d)
		}
		if d := r.IPAddressRebindingTime(0); d != 105*time.Minute {
			t.Errorf("T2 = %v", d)
		}
	} else if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("lease time in a reply without a lease")
	}
}

func TestDiscoverOffer(t *testing.T) {
	s := testServer()
	req, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
	if err != nil {
		t.Fatal(err)
	}
	r := respond(t, s, req)
	if r.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("type = %s", r.MessageType())
	}
	wantIP(t, "yiaddr", r.YourIPAddr, "10.9.0.2")
	if !r.IsBroadcast() {
		t.Errorf("broadcast flag of the discover not kept")
	}
	checkConfig(t, r, true)
}

func TestRequestAck(t *testing.T) {
	s := testServer()
	disc, _ := dhcpv4.NewDiscovery(mac)
	offer := respond(t, s, disc)
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	ack := respond(t, s, req)
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("type = %s", ack.MessageType())
	}
	wantIP(t, "yiaddr", ack.YourIPAddr, "10.9.0.2")
	checkConfig(t, ack, true)

	// Renewal: ciaddr, no option 50, unicast.
	renew, err := dhcpv4.NewRenewFromAck(ack)
	if err != nil {
		t.Fatal(err)
	}
	ack2 := respond(t, s, renew)
	if ack2.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("renewal: type = %s", ack2.MessageType())
	}
	wantIP(t, "renewal ciaddr", ack2.ClientIPAddr, "10.9.0.2")
	wantIP(t, "renewal yiaddr", ack2.YourIPAddr, "10.9.0.2")
}

func TestRequestWrongAddressNak(t *testing.T) {
	s := testServer()
	for _, mod := range []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.7"))), // INIT-REBOOT
		dhcpv4.WithClientIP(net.ParseIP("10.9.0.8")),                             // RENEWING
		dhcpv4.WithClientIP(net.IPv4zero),                                        // nothing asked
	} {
		req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), mod)
		r := respond(t, s, req)
		if r.MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("type = %s, want NAK", r.MessageType())
		}
		if !r.IsBroadcast() || !r.YourIPAddr.IsUnspecified() || r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
			t.Errorf("NAK: %s", r.Summary())
		}
		wantIP(t, "server identifier", r.ServerIdentifier(), "10.9.0.1")
	}
}

func TestRequestForOtherServerIgnored(t *testing.T) {
	s := testServer()
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.2"))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.0.254"))))
	if _, ok := s.Respond(req.ToBytes(), mac, member); ok {
		t.Fatal("answered a REQUEST meant for another server")
	}
}

func TestInform(t *testing.T) {
	s := testServer()
	req, err := dhcpv4.NewInform(mac, net.ParseIP("10.9.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	r := respond(t, s, req)
	if r.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("type = %s", r.MessageType())
	}
	if !r.YourIPAddr.IsUnspecified() {
		t.Errorf("INFORM ACK yiaddr = %v", r.YourIPAddr)
	}
	wantIP(t, "ciaddr", r.ClientIPAddr, "10.9.0.2")
	checkConfig(t, r, false)
}

func TestNoReply(t *testing.T) {
	s := testServer()
	disc, _ := dhcpv4.NewDiscovery(mac)
	good := disc.ToBytes()

	release, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease))
	decline, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline))
	offer, _ := dhcpv4.NewReplyFromRequest(disc, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer))
	noType, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac))
	badCookie := append([]byte(nil), good...)
	badCookie[236] ^= 0xff

	cases := map[string]struct {
		req []byte
		mac net.HardwareAddr
		ip  netip.Addr
	}{
		"release":          {release.ToBytes(), mac, member},
		"decline":          {decline.ToBytes(), mac, member},
		"bootreply":        {offer.ToBytes(), mac, member},
		"no message type":  {noType.ToBytes(), mac, member},
		"chaddr mismatch":  {good, other, member},
		"empty":            {nil, mac, member},
		"garbage":          {[]byte("GET / HTTP/1.1\r\n\r\n"), mac, member},
		"truncated":        {good[:100], mac, member},
		"truncated option": {append(append([]byte(nil), good[:240]...), 53, 5, 1), mac, member},
		"bad cookie":       {badCookie, mac, member},
		"ip outside":       {good, mac, netip.MustParseAddr("10.10.0.2")},
		"ipv6 member":      {good, mac, netip.MustParseAddr("fd00::2")},
	}
	for name, c := range cases {
		if r, ok := s.Respond(c.req, c.mac, c.ip); ok {
			t.Errorf("%s: unexpected reply of %d bytes", name, len(r))
		}
	}
}

func TestMinimalConfig(t *testing.T) {
	s := New(Config{ServerIP: netip.MustParseAddr("192.168.57.1"), Subnet: netip.MustParsePrefix("192.168.57.0/24")})
	disc, _ := dhcpv4.NewDiscovery(mac)
	b, ok := s.Respond(disc.ToBytes(), mac, netip.MustParseAddr("192.168.57.2"))
	if !ok {
		t.Fatal("no offer")
	}
	r, _ := dhcpv4.FromBytes(b)
	if d := r.IPAddressLeaseTime(0); d != DefaultLeaseTime {
		t.Errorf("lease = %v", d)
	}
	if r.Options.Has(dhcpv4.OptionRouter) || r.Options.Has(dhcpv4.OptionDomainNameServer) || r.Options.Has(dhcpv4.OptionInterfaceMTU) || r.Options.Has(dhcpv4.OptionDomainName) {
		t.Errorf("unset options present: %s", r.Summary())
	}
	// An invalid configuration answers nothing rather than nonsense.
	if _, ok := New(Config{}).Respond(disc.ToBytes(), mac, member); ok {
		t.Error("zero Config answered")
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{"10.9.0.0/24": "10.9.0.255", "192.168.56.0/21": "192.168.63.255", "0.0.0.0/0": "255.255.255.255", "10.0.0.1/32": "10.0.0.1"} {
		if got := lastAddr(netip.MustParsePrefix(p).Masked()).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}

func FuzzRespond(f *testing.F) {
	s := testServer()
	disc, _ := dhcpv4.NewDiscovery(mac)
	f.Add(disc.ToBytes())
	req, _ := dhcpv4.NewInform(mac, net.ParseIP("10.9.0.2"))
	f.Add(req.ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		s.Respond(b, mac, member)
	})
}

// TestStatsCountReplies: every reply sent is counted under its kind, and
// requests answered with nothing are not.
func TestStatsCountReplies(t *testing.T) {
	s := testServer()
	disc, _ := dhcpv4.NewDiscovery(mac)
	offer := respond(t, s, disc)
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	respond(t, s, req)
	respond(t, s, req) // a renewal is a lease too
	wrong, _ := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.7"))))
	respond(t, s, wrong)
	inform, _ := dhcpv4.NewInform(mac, net.ParseIP("10.9.0.2"))
	respond(t, s, inform)
	if _, ok := s.Respond(disc.ToBytes(), other, member); ok {
		t.Fatal("answered a DISCOVER from another hardware address")
	}
	s.Respond([]byte("garbage"), mac, member)
	if got, want := s.Stats(), (Stats{Offers: 1, Acks: 2, Naks: 1, InformAcks: 1}); got != want {
		t.Errorf("Stats() = %+v; want %+v", got, want)
	}
}
