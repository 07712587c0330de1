//go:build linux

package main

import (
	"net/netip"
	"testing"
)

func TestParseUpstream(t *testing.T) {
	good := map[string]string{
		"127.0.0.53":       "127.0.0.53:53",
		"127.0.0.1:5353":   "127.0.0.1:5353",
		"::1":              "[::1]:53",
		"[::1]":            "[::1]:53",
		"[2001:db8::1]:54": "[2001:db8::1]:54",
	}
	for in, want := range good {
		got, err := parseUpstream(in)
		if err != nil || got != netip.MustParseAddrPort(want) {
			t.Errorf("parseUpstream(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "dns.example", "1.2.3.4:0", "1.2.3.4:x"} {
		if _, err := parseUpstream(bad); err == nil {
			t.Errorf("parseUpstream(%q) accepted", bad)
		}
	}
}

func TestOptionsRejectBadFlags(t *testing.T) {
	cases := map[string]runFlags{
		"--dns":       {dns: []string{"nope"}, mtu: 65520, linkMode: "auto", logLevel: "warn", logFormat: "text"},
		"--mtu":       {mtu: 100, linkMode: "auto", logLevel: "warn", logFormat: "text"},
		"--userns":    {userns: "keep-id", mtu: 65520, linkMode: "auto", logLevel: "warn", logFormat: "text"},
		"--link-mode": {mtu: 65520, linkMode: "tun", logLevel: "warn", logFormat: "text"},
		"--log-level": {mtu: 65520, linkMode: "auto", logLevel: "loud", logFormat: "text"},
		"--hostname":  {hostname: "bad_name!", mtu: 65520, linkMode: "auto", logLevel: "warn", logFormat: "text"},
	}
	for flag, f := range cases {
		if _, err := f.options([]string{"true"}); err == nil {
			t.Errorf("%s: bad value accepted", flag)
		}
	}
}

// --dns-upstream is refused wherever it would be ignored: on every network
// but private, whatever the user namespace.
func TestDNSUpstreamOnlyOnPrivate(t *testing.T) {
	base := runFlags{dnsUpstream: []string{"127.0.0.53"}, mtu: 65520, linkMode: "auto", logLevel: "warn", logFormat: "text"}
	for _, tt := range []struct {
		network, userns, want string
	}{
		{"bridge", "", "--dns-upstream applies to --network private; shared networks forward to the host's resolvers"},
		{"bridge", "auto", "--dns-upstream applies to --network private; shared networks forward to the host's resolvers"},
		{"mynet", "auto", "--dns-upstream applies to --network private; shared networks forward to the host's resolvers"},
		{"none", "", "--dns-upstream applies to --network private; --network none has no resolver"},
		{"none", "auto", "--dns-upstream applies to --network private; --network none has no resolver"},
		{"private", "", ""},
		{"private", "auto", ""},
	} {
		f := base
		f.network, f.userns = tt.network, tt.userns
		o, err := f.options([]string{"true"})
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("--network %s --userns %q: %v", tt.network, tt.userns, err)
		case tt.want == "" && (len(o.DNSUpstreams) != 1 || o.DNSUpstreams[0] != netip.MustParseAddrPort("127.0.0.53:53")):
			t.Errorf("--network %s --userns %q: upstreams %v", tt.network, tt.userns, o.DNSUpstreams)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("--network %s --userns %q: error %v, want %q", tt.network, tt.userns, err, tt.want)
		}
	}
}
