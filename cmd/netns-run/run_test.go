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
