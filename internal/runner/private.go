package runner

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/dialchan"
	"github.com/netns-run/netns-run/internal/ipam"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack"
	"github.com/netns-run/netns-run/stack/resolver"
	"github.com/netns-run/netns-run/tap"
)

// The private segment, as slirp4netns lays it out.
var (
	privateSubnet   = netip.MustParsePrefix("10.0.2.0/24")
	privateGateway  = netip.MustParseAddr("10.0.2.2")
	privateResolver = netip.MustParseAddr("10.0.2.3")
	privateMember   = netip.MustParseAddr("10.0.2.100")
	// IPv6 as slirp4netns -6 lays it out: the member's address is the one
	// SLAAC makes from its MAC.
	privateSubnet6   = netip.MustParsePrefix("fd00::/64")
	privateGateway6  = netip.MustParseAddr("fd00::2")
	privateResolver6 = netip.MustParseAddr("fd00::3")
)

// private hosts the sandbox's segment in this process: no daemon.
func (r *run) private() (int, error) {
	opts := r.opts
	ups, err := upstreams(opts.DNSUpstreams)
	if err != nil {
		return wire.ExitOwnError, err
	}
	proxy, err := resolver.New(resolver.Config{Upstreams: ups, Logger: r.log})
	if err != nil {
		return wire.ExitOwnError, fmt.Errorf("DNS proxy: %w", err)
	}
	// Ports first: a port in use must fail before anything is made.
	listeners, err := forward.Bind(opts.Publish)
	if err != nil {
		return wire.ExitOwnError, err
	}
	r.undo.push(func() {
		for _, l := range listeners {
			l.Close()
		}
	})
	bound := make([]forward.Mapping, len(listeners))
	for i, l := range listeners {
		bound[i] = l.Mapping()
	}
	// The DNS and port services end with ctx (below); waited for once the
	// stack is closed too.
	var wg sync.WaitGroup
	r.undo.push(wg.Wait)
	p := placement{
		ip: privateMember, prefix: privateSubnet, gateway: privateGateway,
		nameservers: []netip.Addr{privateResolver}, linkMode: opts.LinkMode,
		mac: ipam.MAC(privateMember), gwMAC: ipam.MAC(privateGateway),
	}
	cfg := stack.Config{
		Subnet: privateSubnet, Gateway: privateGateway, Resolver: privateResolver,
		GatewayMAC: p.gwMAC, MTU: uint32(opts.MTU),
		HostLoopback: opts.HostLoopback, Logger: r.log,
	}
	if opts.Pcap != "" {
		f, err := os.OpenFile(opts.Pcap, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return wire.ExitOwnError, fmt.Errorf("--pcap: %w", err)
		}
		// Closed after the stack (the cleanups run last first).
		r.undo.push(func() { f.Close() })
		cfg.Capture = f
	}
	if opts.IPv6 {
		if hostHasIPv6() {
			p.ip6 = netip.PrefixFrom(ipam.SLAAC(privateSubnet6, p.mac), privateSubnet6.Bits())
			p.gateway6 = ipam.SLAAC(ipam.LinkLocalPrefix, p.gwMAC)
			p.ipv6Gateway = privateGateway6
			p.nameservers = append(p.nameservers, privateResolver6)
			cfg.IPv6 = &stack.IPv6Config{Subnet: privateSubnet6, Gateway: privateGateway6, Resolver: privateResolver6}
		} else {
			r.log.Warn("this kernel has no IPv6 (/proc/sys/net/ipv6 is missing): the sandbox gets IPv4 only; --ipv6=false silences this")
		}
	}
	// The stack is built while the agent starts; only the link waits for eth0.
	var gw *stack.Gateway
	sb, err := r.startSandbox(&p, func(*placement) (err error) {
		gw, err = stack.New(cfg)
		if err == nil {
			r.undo.push(gw.Close)
		}
		return err
	})
	if err != nil {
		return statusOf(err), err
	}
	link := sb.Link()
	if err := gw.AttachFD(stack.Link{FD: link.FD, Packet: link.Mode == tap.ModePacket}); err != nil {
		return wire.ExitOwnError, err
	}
	r.log.Debug("sandbox up", "pid", sb.Pid(), "link", link.Mode)
	privateCounters.Store(r, func() wire.MemberStats { return privateStats(gw) })
	r.undo.push(func() { privateCounters.Delete(r) })

	var local forward.LocalDialer
	if len(listeners) > 0 && r.fastPath {
		// The agent serves a dial channel once the command runs: the
		// dialer opens one at the first loopback client (and again if the
		// agent's end went away); until then, and once the sandbox has
		// ended, those clients take the gVisor path.
		d, err := dialchan.New(sb.OpenDialChannel, netip.MustParseAddr("127.0.0.1"), privateMember)
		if err != nil {
			return wire.ExitOwnError, err
		}
		r.undo.push(d.Close)
		local = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.undo.push(cancel)
	if err := gw.ServeDNS(ctx, &wg, proxy); err != nil {
		return wire.ExitOwnError, err
	}
	r.reportAuto(bound)
	member := forward.Member{IP: privateMember, IP6: p.ip6.Addr()} // IPv6 clients over IPv6 when dual stack
	for _, l := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Serve(ctx, member, gw, local)
		}()
	}
	return r.runAndWait(sb, p, bound, nil)
}

// privateStats are the private network's counters, as stats shows a
// shared network's member: the gateway's NIC on the sandbox's link, and
// what its stack holds for the sandbox (every peer of a private network
// is the sandbox, whatever source it sends from).
func privateStats(gw *stack.Gateway) wire.MemberStats {
	ls := gw.LinkStats()
	st := wire.MemberStats{
		RxBytes: ls.RxBytes, RxPackets: ls.RxPackets, TxBytes: ls.TxBytes, TxPackets: ls.TxPackets,
		Drops: map[string]uint64{},
	}
	if ls.Dropped > 0 {
		st.Drops[dropLinkFull] = ls.Dropped
	}
	for _, ps := range gw.PeerStats() {
		st.TCP += ps.TCP
		st.UDP += ps.UDP
		st.NoRoute += ps.NoRoute
		st.Capped += ps.Capped
	}
	return st
}

// dropLinkFull is the drop reason of frames toward the sandbox its
// link's queue had no room for.
const dropLinkFull = "link queue full"

// upstreams are the asked ones, else every nameserver of the host's
// resolv.conf in order, else the resolver glibc assumes when it has none.
func upstreams(asked []netip.AddrPort) ([]netip.AddrPort, error) {
	if len(asked) > 0 {
		return asked, nil
	}
	return resolver.HostUpstreams(), nil
}

// hostHasIPv6 reports whether the kernel has IPv6 (booted without
// ipv6.disable=1): a sandbox's namespace has it then too.
func hostHasIPv6() bool {
	_, err := os.Stat("/proc/sys/net/ipv6")
	return err == nil
}
