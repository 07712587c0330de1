package daemon

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netns-run/netns-run/stack"
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
	if s, err := LoadSettings(write(`{"metrics-addr": "127.0.0.1:9323"}`)); err != nil || s.MetricsAddr != "127.0.0.1:9323" {
		t.Errorf("metrics-addr: %+v, %v", s, err)
	}
	if s, err := LoadSettings(write(`{"log-level": "debug"}`)); err != nil || s.LogLevel != "debug" {
		t.Errorf("log-level: %+v, %v", s, err)
	}
	s, err = LoadSettings(write(`{"member-limits": {"tcp": 4096, "new-tcp-per-second": 5000, "tcp-buffer-bytes": 1073741824, "dns-per-second": 50, "dhcp-per-second": 3}}`))
	if l := s.MemberLimits.Limits().Over(stack.DefaultMemberLimits); err != nil || l.TCP != 4096 || l.NewTCPPerSecond != 5000 || l.TCPBufferBytes != 1<<30 || l.DNSPerSecond != 50 || l.DHCPPerSecond != 3 || l.UDP != stack.DefaultMemberLimits.UDP {
		t.Errorf("member-limits: %+v, %v; want tcp and the rate raised, the rest the defaults", l, err)
	}
	for body, want := range map[string]string{
		`{"log-level": "trace"}`:                      "want debug, info, warn or error",
		`{"log-level": "DEBUG"}`:                      "want debug, info, warn or error",
		`{"metrics-addr": "0.0.0.0:9323"}`:            "only a loopback address",
		`{"ipv6": true, "bip": "10.0.0.1/24"}`:        `unknown field "bip"`,
		`{"ipv6": "yes"}`:                             "cannot unmarshal",
		`{"fixed-cidr-v6": "fd00:1::/64"}`:            `fixed-cidr-v6 needs "ipv6": true`,
		`{"ipv6": true} {}`:                           "more than one JSON object",
		`{"ipv6": true, "fixed-cidr-v6": "x"}`:        "fixed-cidr-v6",
		`{"member-limits": {"tcp": -1}}`:              "member-limits",
		`{"member-limits": {"tcp-buffer-bytes": -1}}`: "member-limits",
		`{"member-limits": {"dns-per-second": -5}}`:   "member-limits",
		`{"member-limits": {"conns": 10}}`:            `unknown field "conns"`,
	} {
		if _, err := LoadSettings(write(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want an error with %q", body, err, want)
		}
	}
}

func TestParseMetricsAddr(t *testing.T) {
	for addr, want := range map[string]MetricsEndpoint{
		"127.0.0.1:9323":                {"tcp", "127.0.0.1:9323"},
		"[::1]:9323":                    {"tcp", "[::1]:9323"},
		"localhost:9323":                {"tcp", "localhost:9323"},
		"/run/user/1000/metrics.sock":   {"unix", "/run/user/1000/metrics.sock"},
		"unix:///tmp/x/../metrics.sock": {"unix", "/tmp/metrics.sock"},
	} {
		if got, err := ParseMetricsAddr(addr); err != nil || got != want {
			t.Errorf("ParseMetricsAddr(%q) = %+v, %v; want %+v", addr, got, err, want)
		}
	}
	for addr, want := range map[string]string{
		"0.0.0.0:9323":        "only a loopback address",
		"[::]:9323":           "only a loopback address",
		":9323":               "only a loopback address",
		"198.51.100.1:9323":   "only a loopback address",
		"example.com:9323":    "only a loopback address",
		"127.0.0.1":           "want HOST:PORT",
		"unix://metrics.sock": "must be absolute",
	} {
		if _, err := ParseMetricsAddr(addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMetricsAddr(%q): %v; want an error with %q", addr, err, want)
		}
	}
}

func TestConfiguredLogLevel(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	if l, err := ConfiguredLogLevel(""); err != nil || l != slog.LevelInfo {
		t.Errorf("no settings, no flag: %v, %v; want info", l, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "netns-run"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "netns-run", "daemon.json"), []byte(`{"log-level": "warn"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := ConfiguredLogLevel(""); err != nil || l != slog.LevelWarn {
		t.Errorf("log-level warn: %v, %v", l, err)
	}
	if l, err := ConfiguredLogLevel("debug"); err != nil || l != slog.LevelDebug {
		t.Errorf("the flag over the settings: %v, %v; want debug", l, err)
	}
	if _, err := ConfiguredLogLevel("verbose"); err == nil || !strings.Contains(err.Error(), "want debug, info, warn or error") {
		t.Errorf("a bad flag: %v", err)
	}
}
