package stack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestRouterAdvertisement parses the advertisement back with gVisor's own
// NDP parsers, as a host's kernel would read it.
func TestRouterAdvertisement(t *testing.T) {
	mac := tcpip.LinkAddress("\x02\x42\x0a\x00\x02\x02")
	checkAdvertisement(t, mac, routerAdvertisement(mac, header.LinkLocalAddr(mac), netip.MustParsePrefix("fd00::/64"), netip.MustParseAddr("fd00::3"), true),
		"fd00::/64", "fd00::3", true)
}

// TestSegmentRouterAdvertisement: on a shared network IPAM assigns the
// addresses, so the prefix (of any length IPAM takes) is on-link but not
// for SLAAC, and the resolver is the gateway itself.
func TestSegmentRouterAdvertisement(t *testing.T) {
	mac := tcpip.LinkAddress("\x02\x42\xac\x12\x00\x01")
	v6 := &IPv6Config{Subnet: netip.MustParsePrefix("fd00:db8:1::/80"), Gateway: netip.MustParseAddr("fd00:db8:1::1"),
		Resolver: netip.MustParseAddr("fd00:db8:1::1"), Assigned: true}
	if err := v6.validate(); err != nil {
		t.Fatal(err)
	}
	a := newAdvertiser(nil, mac, header.LinkLocalAddr(mac), v6)
	checkAdvertisement(t, mac, a.frame, "fd00:db8:1::/80", "fd00:db8:1::1", false)
	v6.Assigned = false
	if err := v6.validate(); err == nil {
		t.Error("SLAAC on a /80 validated")
	}
}

func checkAdvertisement(t *testing.T, mac tcpip.LinkAddress, frame []byte, prefix, resolver string, slaac bool) {
	t.Helper()
	ll := header.LinkLocalAddr(mac)

	eth := header.Ethernet(frame)
	if eth.SourceAddress() != mac || eth.DestinationAddress() != tcpip.LinkAddress("\x33\x33\x00\x00\x00\x01") || eth.Type() != header.IPv6ProtocolNumber {
		t.Fatalf("Ethernet header: src %s dst %s type %#x", eth.SourceAddress(), eth.DestinationAddress(), eth.Type())
	}
	ip := header.IPv6(frame[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.HopLimit() != 255 || ip.SourceAddress() != ll || ip.DestinationAddress() != header.IPv6AllNodesMulticastAddress {
		t.Fatalf("IPv6 header: valid %v hop limit %d src %s dst %s", ip.IsValid(len(ip)), ip.HopLimit(), ip.SourceAddress(), ip.DestinationAddress())
	}
	icmp := header.ICMPv6(ip.Payload())
	if icmp.Type() != header.ICMPv6RouterAdvert {
		t.Fatalf("ICMPv6 type %d", icmp.Type())
	}
	if want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ll, Dst: header.IPv6AllNodesMulticastAddress}); icmp.Checksum() != want {
		t.Errorf("checksum %#x, want %#x", icmp.Checksum(), want)
	}
	ra := header.NDPRouterAdvert(icmp.MessageBody())
	if ra.CurrHopLimit() != 64 || ra.RouterLifetime() != routerLifetime || ra.ManagedAddrConfFlag() || ra.OtherConfFlag() {
		t.Errorf("RA: hop limit %d lifetime %s managed %v other %v", ra.CurrHopLimit(), ra.RouterLifetime(), ra.ManagedAddrConfFlag(), ra.OtherConfFlag())
	}
	it, err := ra.Options().Iter(true)
	if err != nil {
		t.Fatalf("options: %v", err)
	}
	var seen []string
	for {
		opt, done, err := it.Next()
		if err != nil {
			t.Fatalf("options: %v", err)
		}
		if done {
			break
		}
		switch o := opt.(type) {
		case header.NDPSourceLinkLayerAddressOption:
			if o.EthernetAddress() != mac {
				t.Errorf("source link-layer address %s", o.EthernetAddress())
			}
			seen = append(seen, "sll")
		case header.NDPPrefixInformation:
			if o.Subnet().String() != prefix || !o.OnLinkFlag() || o.AutonomousAddressConfigurationFlag() != slaac ||
				o.ValidLifetime() != prefixValid || o.PreferredLifetime() != prefixPreferred {
				t.Errorf("prefix %s on-link %v autonomous %v valid %s preferred %s", o.Subnet(), o.OnLinkFlag(), o.AutonomousAddressConfigurationFlag(), o.ValidLifetime(), o.PreferredLifetime())
			}
			seen = append(seen, "prefix")
		case header.NDPRecursiveDNSServer:
			addrs, err := o.Addresses()
			if err != nil || len(addrs) != 1 || addrs[0] != tcpip.AddrFrom16(netip.MustParseAddr(resolver).As16()) || o.Lifetime() != rdnssLifetime {
				t.Errorf("RDNSS %v %v lifetime %s", addrs, err, o.Lifetime())
			}
			seen = append(seen, "rdnss")
		}
	}
	if len(seen) != 3 {
		t.Errorf("options seen: %v; want sll, prefix, rdnss", seen)
	}
	if rdnssLifetime < 2*raInterval || prefixPreferred < 2*raInterval || routerLifetime < 2*raInterval {
		t.Errorf("a lifetime shorter than two advertisement intervals (%s) lapses on one lost advertisement", raInterval)
	}
}
