// Package dhcp is the segment's DHCPv4 server. Leases are decided elsewhere
// (IPAM): every member's address is fixed and known, so the server is a pure
// function from a request and the asking member's MAC and IP to a reply. It
// keeps no state but its counters of replies, opens no sockets and never
// panics on malformed input; the
// switch (stack/ethswitch) hands it the UDP payloads and frames the replies.
package dhcp

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Config is what the server hands out besides the member's address.
type Config struct {
	ServerIP netip.Addr   // the server identifier (the gateway)
	Router   netip.Addr   // default route; omitted when invalid
	Subnet   netip.Prefix // mask and broadcast address
	DNS      []netip.Addr // IPv4 resolvers (others are skipped)
	Domain   string       // optional domain name (option 15)
	// LeaseTime defaults to 1h. Renewal (T1) and rebinding (T2) times
	// are 1/2 and 7/8 of it.
	LeaseTime time.Duration
	MTU       uint16 // optional interface MTU (option 26)
}

// DefaultLeaseTime is used when Config.LeaseTime is zero.
const DefaultLeaseTime = time.Hour

// Server answers DHCPv4 requests for members with fixed addresses.
type Server struct {
	cfg     Config
	server  net.IP
	mask    net.IPMask
	bcast   net.IP
	router  net.IP
	dns     []net.IP
	lease   time.Duration
	options []dhcpv4.Option // the configuration options of OFFER and ACK
	counts  [replyKinds]atomic.Uint64
}

// replyKind is what a reply was, for Stats.
type replyKind int

const (
	offer replyKind = iota
	ack
	nak
	informAck
	replyKinds
)

// Stats count the replies sent: Acks are the leases handed out (and
// renewed), InformAcks the configurations without a lease.
type Stats struct {
	Offers, Acks, Naks, InformAcks uint64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{Offers: s.counts[offer].Load(), Acks: s.counts[ack].Load(), Naks: s.counts[nak].Load(), InformAcks: s.counts[informAck].Load()}
}

// New returns a server for cfg. It never fails: an invalid ServerIP or
// Subnet makes Respond refuse every request.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, lease: cfg.LeaseTime}
	if s.lease <= 0 {
		s.lease = DefaultLeaseTime
	}
	if ip := cfg.ServerIP.Unmap(); ip.Is4() && !ip.IsUnspecified() {
		s.server = ip4(ip)
	}
	if p := cfg.Subnet; p.IsValid() && p.Addr().Unmap().Is4() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
		s.mask = net.CIDRMask(p.Bits(), 32)
		s.bcast = ip4(lastAddr(p))
	}
	if ip := cfg.Router.Unmap(); ip.Is4() && !ip.IsUnspecified() {
		s.router = ip4(ip)
	}
	for _, d := range cfg.DNS {
		if d := d.Unmap(); d.Is4() && !d.IsUnspecified() {
			s.dns = append(s.dns, ip4(d))
		}
	}
	if s.mask != nil {
		s.options = append(s.options, dhcpv4.OptSubnetMask(s.mask), dhcpv4.OptBroadcastAddress(s.bcast))
	}
	if s.router != nil {
		s.options = append(s.options, dhcpv4.OptRouter(s.router))
	}
	if len(s.dns) > 0 {
		s.options = append(s.options, dhcpv4.OptDNS(s.dns...))
	}
	if cfg.Domain != "" {
		s.options = append(s.options, dhcpv4.OptDomainName(cfg.Domain))
	}
	if cfg.MTU >= 68 {
		s.options = append(s.options, dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(cfg.MTU >> 8), byte(cfg.MTU)}))
	}
	return s
}

// Respond answers req, the UDP payload of a DHCP message from the member
// with MAC mac and address ip:
//
//   - DISCOVER gets an OFFER of ip;
//   - REQUEST gets an ACK, or a NAK when the address asked for (option 50,
//     else ciaddr) is not ip; a REQUEST naming another server (option 54)
//     is ignored, as RFC 2131 says;
//   - INFORM gets an ACK with the configuration and no lease;
//   - RELEASE, DECLINE and anything else get no reply.
//
// ok is false when there is nothing to send: malformed input, a BOOTREPLY,
// a client hardware address other than mac, an ip outside the subnet, or a
// message that needs no reply.
func (s *Server) Respond(req []byte, mac net.HardwareAddr, ip netip.Addr) (reply []byte, ok bool) {
	defer func() {
		// The parser is third-party; a packet must never crash the segment.
		if recover() != nil {
			reply, ok = nil, false
		}
	}()
	ip = ip.Unmap()
	if s.server == nil || s.mask == nil || !ip.Is4() || !s.cfg.Subnet.Contains(ip) || len(mac) != 6 {
		return nil, false
	}
	m, err := dhcpv4.FromBytes(req)
	if err != nil || m.OpCode != dhcpv4.OpcodeBootRequest || m.HWType != iana.HWTypeEthernet {
		return nil, false
	}
	if len(m.ClientHWAddr) != 6 || string(m.ClientHWAddr) != string(mac) {
		return nil, false
	}
	yours := ip4(ip)
	var mods []dhcpv4.Modifier
	var kind replyKind
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		kind, mods = offer, s.lease4(dhcpv4.MessageTypeOffer, yours)
	case dhcpv4.MessageTypeRequest:
		if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(s.server) {
			return nil, false // the client chose another server
		}
		want := m.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = m.ClientIPAddr
		}
		if want == nil || !want.Equal(yours) {
			kind = nak
			mods = []dhcpv4.Modifier{
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.server)),
				dhcpv4.WithOption(dhcpv4.OptMessage("requested address is not this client's")),
				dhcpv4.WithClientIP(net.IPv4zero),
				dhcpv4.WithYourIP(net.IPv4zero),
				dhcpv4.WithServerIP(net.IPv4zero),
				dhcpv4.WithBroadcast(true), // RFC 2131 §4.3.2: NAKs are broadcast
			}
			break
		}
		kind, mods = ack, append(s.lease4(dhcpv4.MessageTypeAck, yours), dhcpv4.WithClientIP(m.ClientIPAddr))
	case dhcpv4.MessageTypeInform:
		// RFC 2131 §3.4: the client has its address; no lease, no yiaddr.
		kind = informAck
		mods = []dhcpv4.Modifier{
			dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.server)),
			dhcpv4.WithYourIP(net.IPv4zero),
			dhcpv4.WithClientIP(m.ClientIPAddr),
		}
		for _, o := range s.options {
			mods = append(mods, dhcpv4.WithOption(o))
		}
	default: // RELEASE, DECLINE, and server messages
		return nil, false
	}
	r, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return nil, false
	}
	s.counts[kind].Add(1)
	return r.ToBytes(), true
}

// lease4 are the modifiers of an OFFER or ACK of yours.
func (s *Server) lease4(t dhcpv4.MessageType, yours net.IP) []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(t),
		dhcpv4.WithYourIP(yours),
		dhcpv4.WithServerIP(s.server),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.server)),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.lease)),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(s.lease / 2)),
		dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(s.lease * 7 / 8)),
	}
	for _, o := range s.options {
		mods = append(mods, dhcpv4.WithOption(o))
	}
	return mods
}

func ip4(a netip.Addr) net.IP {
	b := a.As4()
	return net.IPv4(b[0], b[1], b[2], b[3]).To4()
}

// lastAddr is the broadcast address of p (p masked, IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1 // a shift by 32 gives 0: /0 works
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
