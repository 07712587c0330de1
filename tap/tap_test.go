package tap

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "tap", "packet"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParseMode("tun"); err == nil || !strings.Contains(err.Error(), "auto, tap or packet") {
		t.Errorf("ParseMode(tun) error = %v", err)
	}
}

func TestValidate(t *testing.T) {
	good := Config{Name: "eth0", MTU: 65520, MAC: "02:42:0a:00:02:64",
		Address: netip.MustParsePrefix("10.0.2.100/24"), Gateway: netip.MustParseAddr("10.0.2.2")}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	// IPv6: the gateway is link-local (a segment's gateway) or inside the
	// address's prefix (a kernel macvlan's LAN router).
	for _, gw := range []string{"fe80::42:aff:fe00:202", "2001:db8:7::1"} {
		c := good
		c.Address6, c.Gateway6 = netip.MustParsePrefix("2001:db8:7::5/64"), netip.MustParseAddr(gw)
		if err := c.Validate(); err != nil {
			t.Errorf("IPv6 gateway %s: %v", gw, err)
		}
	}
	bad := map[string]func(c *Config){
		"gateway6 outside": func(c *Config) {
			c.Address6, c.Gateway6 = netip.MustParsePrefix("2001:db8:7::5/64"), netip.MustParseAddr("2001:db8:8::1")
		},
		"address6 v4": func(c *Config) {
			c.Address6, c.Gateway6 = netip.MustParsePrefix("10.0.2.5/24"), netip.MustParseAddr("fe80::1")
		},
		"MTU":     func(c *Config) { c.MTU = 10 },
		"MAC":     func(c *Config) { c.MAC = "zz" },
		"outside": func(c *Config) { c.Gateway = netip.MustParseAddr("10.0.3.1") },
		"empty":   func(c *Config) { c.Name = "" },
		"address": func(c *Config) { c.Address = netip.Prefix{} },
	}
	for name, mutate := range bad {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}
