// Package segment hosts one network shared by several sandboxes: the L2
// switch between their eth0s, the gateway stack behind it (ARP, ping,
// outbound NAT, published ports), DHCP, and a DNS that knows the members'
// names on user-defined networks.
package segment

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/stack"
	"github.com/netns-run/netns-run/stack/dhcp"
	"github.com/netns-run/netns-run/stack/ethswitch"
	"github.com/netns-run/netns-run/stack/resolver"
	"github.com/netns-run/netns-run/stack/sourcerate"
)

// MTU of userspace segments: netstack's cost is per packet, so frames are
// as large as Linux allows (docs/ARCHITECTURE.md, Measured facts: MTU 65520).
const MTU = 65520

// dnsTTL is short: a member that restarts elsewhere must be found at once.
const dnsTTL = 5

// requestRate is n requests a second with a burst of twice as many, the
// shape of a member's DNS and DHCP rates (stack.MemberLimits), or def's
// when n is 0.
func requestRate(n, def int) sourcerate.Limit {
	if n <= 0 {
		n = def
	}
	return sourcerate.Limit{PerSecond: float64(n), Burst: 2 * n}
}

// The drop reasons the segment adds to a member's switch drops.
const (
	DropDHCPRate = "dhcp over rate"
	DropDNSRate  = "dns over rate"
)

// Member is one sandbox on the segment.
type Member struct {
	ID   string
	Name string
	IP   netip.Addr
	IP6  netip.Addr // on a dual-stack segment
	MAC  net.HardwareAddr
	// Aliases are further names the segment's DNS answers for it
	// (--network-alias, link aliases).
	Aliases []string
	// DNS are the member's own upstreams (run --dns on a user-defined
	// network): the segment's DNS forwards its queries there instead, as
	// Docker's embedded DNS does.
	DNS []netip.AddrPort
}

// Config describes a segment. The caller (the daemon) derives it from its
// network definition.
type Config struct {
	Name       string // the network's name, for logs and errors
	Subnet     netip.Prefix
	Gateway    netip.Addr
	GatewayMAC net.HardwareAddr
	// Isolate lets members reach the gateway but not each other (macvlan
	// private mode).
	Isolate bool
	// Internal means no outbound NAT and no upstream DNS.
	Internal bool
	// MemberLimits bound each member's outbound connections and flows
	// (stack.MemberLimits; the daemon passes stack.DefaultMemberLimits
	// or its settings').
	MemberLimits stack.MemberLimits
	// MemberNames makes the DNS answer members' names, ids and aliases, as
	// Docker does on user-defined networks but not on the default bridge.
	MemberNames bool
	// Subnet6 and Gateway6 make the segment dual stack: members' IPv6
	// addresses come from IPAM (Member.IP6), the gateway routes them and
	// announces the subnet on-link; the DNS answers there too.
	Subnet6   netip.Prefix
	Gateway6  netip.Addr
	Upstreams []netip.AddrPort // where the DNS forwards other names
	Logger    *slog.Logger
	// OnDrop gets the switch's drop reports instead of Logger
	// (ethswitch.Options.OnDrop).
	OnDrop func(ethswitch.Drop)
}

// Segment is a running network.
type Segment struct {
	name   string
	sw     *ethswitch.Switch
	gw     *stack.Gateway
	ctx    context.Context // ends when the segment closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	dns      *resolver.Proxy
	dhcp     *dhcp.Server
	dhcpRate *sourcerate.Table // by member address

	mu        sync.Mutex
	members   map[string]Member            // by ID
	published map[string]*forward.Counters // by member ID
}

// New starts the segment's switch, gateway, DHCP and DNS.
func New(cfg Config) (*Segment, error) {
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Contains(cfg.Gateway) {
		return nil, fmt.Errorf("network %s: gateway %s is not inside subnet %s", cfg.Name, cfg.Gateway, cfg.Subnet)
	}
	if len(cfg.GatewayMAC) != 6 {
		return nil, fmt.Errorf("network %s: gateway MAC %q is not an Ethernet address", cfg.Name, cfg.GatewayMAC)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("network", cfg.Name)
	dhcpSrv := dhcp.New(dhcp.Config{ServerIP: cfg.Gateway, Router: cfg.Gateway, Subnet: cfg.Subnet, DNS: []netip.Addr{cfg.Gateway}, MTU: MTU})
	// A client sends a handful of DHCP messages to get or renew its
	// lease, and each one is parsed here; past its rate they are dropped,
	// counted as DropDHCPRate.
	dhcpRate := sourcerate.New(requestRate(cfg.MemberLimits.DHCPPerSecond, stack.DefaultMemberLimits.DHCPPerSecond))
	sw, err := ethswitch.New(ethswitch.Options{
		GatewayMAC: cfg.GatewayMAC,
		GatewayIP:  cfg.Gateway,
		MTU:        MTU,
		Isolate:    cfg.Isolate,
		OnDrop:     cfg.OnDrop,
		DHCP: func(req []byte, m ethswitch.Member) ([]byte, bool) {
			if !dhcpRate.Allow(m.IP) {
				return nil, false
			}
			return dhcpSrv.Respond(req, m.MAC, m.IP)
		},
		Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("network %s: switch: %w", cfg.Name, err)
	}
	gcfg := stack.Config{
		Subnet: cfg.Subnet, Gateway: cfg.Gateway, Resolver: cfg.Gateway,
		GatewayMAC: cfg.GatewayMAC, MTU: MTU, Internal: cfg.Internal, MemberLimits: cfg.MemberLimits, Logger: log,
	}
	if cfg.Subnet6.IsValid() {
		gcfg.IPv6 = &stack.IPv6Config{Subnet: cfg.Subnet6, Gateway: cfg.Gateway6, Resolver: cfg.Gateway6, Assigned: true}
	}
	gw, err := stack.NewOnEndpoint(gcfg, sw.GatewayEndpoint())
	if err != nil {
		sw.Close()
		return nil, fmt.Errorf("network %s: gateway: %w", cfg.Name, err)
	}
	s := &Segment{name: cfg.Name, sw: sw, gw: gw, dhcp: dhcpSrv, dhcpRate: dhcpRate,
		members: make(map[string]Member), published: make(map[string]*forward.Counters)}
	proxy, err := resolver.New(s.resolverConfig(cfg, log))
	if err != nil {
		s.closeStack()
		return nil, fmt.Errorf("network %s: DNS: %w", cfg.Name, err)
	}
	s.dns = proxy
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx, s.cancel = ctx, cancel
	if err := gw.ServeDNS(ctx, &s.wg, proxy); err != nil {
		cancel()
		s.wg.Wait()
		s.closeStack()
		return nil, fmt.Errorf("network %s: DNS: %w", cfg.Name, err)
	}
	return s, nil
}

// resolverConfig is the DNS of the segment: member names first when asked
// for, then the upstreams; on an internal network nothing goes upstream.
func (s *Segment) resolverConfig(cfg Config, log *slog.Logger) resolver.Config {
	rc := resolver.Config{Upstreams: cfg.Upstreams, Logger: log,
		PerClient: requestRate(cfg.MemberLimits.DNSPerSecond, stack.DefaultMemberLimits.DNSPerSecond)}
	if cfg.MemberNames {
		rc.Local = s.answer
		rc.UpstreamsOf = s.upstreamsOf
	}
	if cfg.Internal {
		rc.Upstreams, rc.UpstreamsOf = nil, nil
		rc.Local = func(q dns.Question) ([]dns.RR, bool) {
			if !cfg.MemberNames {
				return nil, true
			}
			rrs, _ := s.answer(q)
			return rrs, true
		}
	}
	return rc
}

// upstreamsOf is the --dns of the member at ip, if it has any.
func (s *Segment) upstreamsOf(ip netip.Addr) []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.members {
		if m.IP == ip {
			return m.DNS
		}
	}
	return nil
}

// Gateway is the stack that dials into the segment for published ports.
func (s *Segment) Gateway() *stack.Gateway { return s.gw }

// Add connects a member's eth0 descriptor to the switch. The segment owns
// fd from then on, also when Add fails.
func (s *Segment) Add(m Member, fd int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sw.AddPort(ethswitch.Member{MAC: m.MAC, IP: m.IP, IP6: m.IP6, FD: fd}); err != nil {
		return fmt.Errorf("network %s: attach %s: %w", s.name, m.Name, err)
	}
	s.members[m.ID] = m
	s.published[m.ID] = new(forward.Counters)
	return nil
}

// Published are the counters of the published ports of the member id
// (forward.Member.Counts); nil when it is not on the segment.
func (s *Segment) Published(id string) *forward.Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published[id]
}

// Remove disconnects a member and closes its descriptor. Its rates and
// its connections through the NAT go with it: the next member at its
// address starts afresh.
func (s *Segment) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.members[id]; ok {
		s.sw.RemovePort(m.MAC)
		s.gw.EndMember(m.IP)
		if m.IP6.IsValid() {
			s.gw.EndMember(m.IP6)
		}
		delete(s.members, id)
		delete(s.published, id)
		s.dhcpRate.Forget(m.IP)
		s.dns.ForgetClient(m.IP)
		if m.IP6.IsValid() {
			s.dns.ForgetClient(m.IP6)
		}
	}
}

// Close stops everything; members' descriptors are closed.
func (s *Segment) Close() {
	s.cancel()
	s.wg.Wait()
	s.closeStack()
}

func (s *Segment) closeStack() {
	s.gw.Close()
	s.sw.Close()
}

// lookup finds a member by name, alias or short id (case-insensitive).
func (s *Segment) lookup(name string) (Member, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.members {
		if strings.EqualFold(m.Name, name) || (len(name) >= 12 && strings.HasPrefix(m.ID, name)) {
			return m, true
		}
		for _, a := range m.Aliases {
			if strings.EqualFold(a, name) {
				return m, true
			}
		}
	}
	return Member{}, false
}

// answer resolves member names, A and (on a dual-stack segment) AAAA;
// other names go upstream.
func (s *Segment) answer(q dns.Question) ([]dns.RR, bool) {
	m, ok := s.lookup(q.Name)
	if !ok {
		return nil, false
	}
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: dnsTTL}
	switch {
	case q.Qtype == dns.TypeA:
		return []dns.RR{&dns.A{Hdr: hdr, A: m.IP.AsSlice()}}, true
	case q.Qtype == dns.TypeAAAA && m.IP6.IsValid():
		return []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: m.IP6.AsSlice()}}, true
	}
	return nil, true // the name exists, with no record of that type
}
