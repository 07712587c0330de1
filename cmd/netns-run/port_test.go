//go:build linux

package main

import (
	"fmt"
	"testing"
)

func TestParsePrivatePort(t *testing.T) {
	for in, want := range map[string]string{"80": "80/tcp", "80/tcp": "80/tcp", "53/udp": "53/udp"} {
		p, proto, err := parsePrivatePort(in)
		if got := fmt.Sprintf("%d/%s", p, proto); err != nil || got != want {
			t.Errorf("parsePrivatePort(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"http", "0", "70000", "80/sctp", "80/"} {
		if _, _, err := parsePrivatePort(bad); err == nil {
			t.Errorf("parsePrivatePort(%q) accepted", bad)
		}
	}
}
