//go:build linux

package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/netns-run/netns-run/internal/runner"
	"github.com/spf13/pflag"
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

// TestOptionsRejectBadFlags parses each bad value as the CLI does (the
// flags as registered, with their defaults) and checks that the error names
// the flag and says what it wants, so the user knows what to fix.
func TestOptionsRejectBadFlags(t *testing.T) {
	parse := func(t *testing.T, args ...string) (runner.Options, error) {
		t.Helper()
		var f runFlags
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		f.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parsing %q: %v", args, err)
		}
		return f.options([]string{"true"})
	}
	if _, err := parse(t); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	cases := []struct {
		args []string
		want string // a substring of the error
	}{
		{[]string{"--dns", "nope"}, `invalid --dns "nope": want an IP address`},
		{[]string{"--dns-upstream", "dns.example"}, `invalid --dns-upstream "dns.example": want ADDR or ADDR:PORT`},
		{[]string{"--mtu", "100"}, "invalid --mtu 100: want 1280-65520"},
		{[]string{"--mtu", "65521"}, "invalid --mtu 65521: want 1280-65520"},
		{[]string{"--userns", "keep-id"}, `invalid --userns "keep-id": the only mode is "auto"`},
		{[]string{"--link-mode", "tun"}, `invalid --link-mode: invalid link mode "tun": want auto, tap or packet`},
		{[]string{"--log-level", "loud"}, `invalid --log-level "loud": want debug, info, warn or error`},
		{[]string{"--log-format", "xml"}, `invalid --log-format "xml": want text or json`},
		{[]string{"--hostname", "bad_name!"}, `invalid --hostname: hostname "bad_name!" contains '_'; only letters, digits, '-' and '.' are allowed`},
		{[]string{"--hostname", strings.Repeat("a.", 32) + "a"}, "invalid --hostname: 65 characters, at most 64"},
		{[]string{"--name", "-x"}, `invalid --name "-x": use letters, digits`},
		{[]string{"--ip", "10.0.0.300"}, `invalid --ip "10.0.0.300": want an IPv4 address`},
		{[]string{"--mac-address", "02:42"}, `invalid --mac-address "02:42": want six hex bytes`},
		{[]string{"--network", "none", "-p", "8080:80"}, "--network none has no network to publish ports on"},
		{[]string{"--network", "private", "--ip", "10.0.2.50"}, "--ip, --ip6, --mac-address, --link and --network-alias need a shared network"},
		{[]string{"--network", "none", "--ip6", "fd00:1::5"}, "--ip, --ip6, --mac-address, --link and --network-alias need a shared network"},
		{[]string{"--ip6", "10.0.0.5"}, `invalid --ip6 "10.0.0.5": want a unicast IPv6 address`},
		{[]string{"--ip6", "fe80::5"}, `invalid --ip6 "fe80::5": want a unicast IPv6 address`},
		{[]string{"--dns", "fe80::1%eth0\nnameserver 203.0.113.66"}, `invalid --dns "fe80::1%eth0\nnameserver 203.0.113.66": want an IP address`},
		{[]string{"--dns-search", "example.test\nnameserver 203.0.113.66"}, `invalid --dns-search: hostname "example.test\nnameserver 203.0.113.66" contains '\n'`},
		{[]string{"--dns-search", "a..b"}, `invalid --dns-search: hostname "a..b" has an empty label`},
		{[]string{"--dns-option", "ndots:2 rotate"}, `invalid --dns-option "ndots:2 rotate": want one resolv.conf option`},
		{[]string{"--dns-option", ""}, `invalid --dns-option "": want one resolv.conf option`},
		{[]string{"-e", "=x"}, `invalid --env "=x": the variable has no name: want KEY=VALUE or KEY`},
		{[]string{"-p", "99999:80"}, `invalid port spec "99999:80": host port "99999" is not a number in 1-65535`},
		{[]string{"-T", "80:99999"}, `invalid -T spec "80:99999": port "99999" is not a number in 1-65535`},
		{[]string{"--add-host", "name"}, `invalid --add-host "name": want NAME:IP or NAME:host-gateway`},
		{[]string{"--link", "a:b:c"}, `invalid --link "a:b:c": want NAME or NAME:ALIAS`},
		{[]string{"--network-alias", "bad alias"}, `invalid --network-alias "bad alias"`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, err := parse(t, c.args...)
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q; want it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
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
