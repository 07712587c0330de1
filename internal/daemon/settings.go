package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/netns-run/netns-run/stack"
)

// Settings are the daemon's own, read from SettingsPath at start, with
// the names Docker's daemon.json gives them.
type Settings struct {
	// IPv6 makes the default bridge dual stack; FixedCIDRv6 is its IPv6
	// subnet (zero: a unique local /64 is picked).
	IPv6        bool         `json:"ipv6"`
	FixedCIDRv6 netip.Prefix `json:"fixed-cidr-v6,omitzero"`
	// MetricsAddr serves the daemon's Prometheus metrics (loopback or a
	// unix socket only: ParseMetricsAddr); daemon --metrics overrides it.
	MetricsAddr string `json:"metrics-addr,omitempty"`
	// LogLevel is the on-demand daemon's: debug, info (the default), warn
	// or error; daemon --log-level overrides it.
	LogLevel string `json:"log-level,omitempty"`
	// MemberLimits raise or lower what one member of a shared network may
	// make the daemon hold; a key left out keeps its default
	// (stack.DefaultMemberLimits). netns-run's own, not Docker's.
	MemberLimits MemberLimitsSetting `json:"member-limits,omitzero"`
}

// MemberLimitsSetting is daemon.json's "member-limits".
type MemberLimitsSetting struct {
	TCP             int `json:"tcp,omitempty"`
	TCPHandshakes   int `json:"tcp-handshakes,omitempty"`
	UDP             int `json:"udp,omitempty"`
	NewTCPPerSecond int `json:"new-tcp-per-second,omitempty"`
	TCPBufferBytes  int `json:"tcp-buffer-bytes,omitempty"`
	DNSPerSecond    int `json:"dns-per-second,omitempty"`
	DHCPPerSecond   int `json:"dhcp-per-second,omitempty"`
}

// Limits are the setting as the gateway takes them; zero fields keep
// the defaults.
func (m MemberLimitsSetting) Limits() stack.MemberLimits {
	return stack.MemberLimits{TCP: m.TCP, HalfOpen: m.TCPHandshakes, UDP: m.UDP, NewTCPPerSecond: m.NewTCPPerSecond, TCPBufferBytes: m.TCPBufferBytes,
		DNSPerSecond: m.DNSPerSecond, DHCPPerSecond: m.DHCPPerSecond}
}

// SettingsPath is where the settings live: $XDG_CONFIG_HOME/netns-run/
// daemon.json, else ~/.config/netns-run/daemon.json.
func SettingsPath() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "netns-run", "daemon.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the config directory: %w: set XDG_CONFIG_HOME or HOME", err)
	}
	return filepath.Join(home, ".config", "netns-run", "daemon.json"), nil
}

// LoadSettings reads path; a missing file is the defaults. As dockerd, it
// refuses a file it cannot read whole: bad JSON, a key it does not know.
func LoadSettings(path string) (Settings, error) {
	var s Settings
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("daemon settings: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Settings{}, fmt.Errorf("daemon settings %s: %w (known keys: ipv6, fixed-cidr-v6, metrics-addr, log-level, member-limits with tcp, tcp-handshakes, udp, new-tcp-per-second, tcp-buffer-bytes, dns-per-second, dhcp-per-second)", path, err)
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return Settings{}, fmt.Errorf("daemon settings %s: more than one JSON object", path)
	}
	if s.FixedCIDRv6.IsValid() && !s.IPv6 {
		return Settings{}, fmt.Errorf("daemon settings %s: fixed-cidr-v6 needs \"ipv6\": true", path)
	}
	if s.MetricsAddr != "" {
		if _, err := ParseMetricsAddr(s.MetricsAddr); err != nil {
			return Settings{}, fmt.Errorf("daemon settings %s: metrics-addr: %w", path, err)
		}
	}
	if s.LogLevel != "" {
		if _, err := ParseLogLevel(s.LogLevel); err != nil {
			return Settings{}, fmt.Errorf("daemon settings %s: log-level: %w", path, err)
		}
	}
	if m := s.MemberLimits; m.TCP < 0 || m.TCPHandshakes < 0 || m.UDP < 0 || m.NewTCPPerSecond < 0 || m.TCPBufferBytes < 0 || m.DNSPerSecond < 0 || m.DHCPPerSecond < 0 {
		return Settings{}, fmt.Errorf("daemon settings %s: member-limits: %+v: want numbers above 0 (or leave a key out for its default)", path, m)
	}
	return s, nil
}

// ParseLogLevel takes debug, info, warn or error, as Docker's daemon.json
// and dockerd --log-level spell them.
func ParseLogLevel(level string) (slog.Level, error) {
	switch level {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", level)
}

// ConfiguredLogLevel is flag (daemon --log-level) if set, else the
// settings' log-level, else info.
func ConfiguredLogLevel(flag string) (slog.Level, error) {
	if flag != "" {
		return ParseLogLevel(flag)
	}
	path, err := SettingsPath()
	if err != nil {
		return 0, err
	}
	s, err := LoadSettings(path)
	if err != nil || s.LogLevel == "" {
		return slog.LevelInfo, err
	}
	return ParseLogLevel(s.LogLevel)
}
