package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if s, err := LoadSettings(filepath.Join(dir, "missing.json")); err != nil || s != (Settings{}) {
		t.Errorf("a missing file: %+v, %v; want the defaults", s, err)
	}
	s, err := LoadSettings(write(`{"ipv6": true, "fixed-cidr-v6": "fd00:1::/64"}`))
	if err != nil || !s.IPv6 || s.FixedCIDRv6 != netip.MustParsePrefix("fd00:1::/64") {
		t.Errorf("Docker's keys: %+v, %v", s, err)
	}
	for body, want := range map[string]string{
		`{"ipv6": true, "bip": "10.0.0.1/24"}`: `unknown field "bip"`,
		`{"ipv6": "yes"}`:                      "cannot unmarshal",
		`{"fixed-cidr-v6": "fd00:1::/64"}`:     `fixed-cidr-v6 needs "ipv6": true`,
		`{"ipv6": true} {}`:                    "more than one JSON object",
		`{"ipv6": true, "fixed-cidr-v6": "x"}`: "fixed-cidr-v6",
	} {
		if _, err := LoadSettings(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error with %q", body, err, want)
		}
	}
}
