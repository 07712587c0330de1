package hosts

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// hostGatewayName is Docker's --add-host value for "the host, as the
// sandbox reaches it" (the gateway address).
const hostGatewayName = "host-gateway"

// ParseAddHost parses Docker's --add-host value: NAME:IP or NAME=IP, where IP
// may be IPv6, bare (NAME:::1) or bracketed (NAME:[::1]), or the special
// value host-gateway, which returns hostGateway true and an invalid ip for
// the caller to fill in with the gateway address.
func ParseAddHost(s string) (name string, ip netip.Addr, hostGateway bool, err error) {
	const want = "want NAME:IP or NAME:host-gateway"
	// Split at the first separator only, so the colons of an IPv6 address
	// stay in the value.
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		name, value, ok = strings.Cut(s, ":")
	}
	if !ok || name == "" || value == "" {
		return "", netip.Addr{}, false, fmt.Errorf("invalid --add-host %q: %s", s, want)
	}
	if err := ValidHostname(name); err != nil {
		return "", netip.Addr{}, false, fmt.Errorf("invalid --add-host %q: %w (%s)", s, err, want)
	}
	if value == hostGatewayName {
		return name, netip.Addr{}, true, nil
	}
	if len(value) > 2 && value[0] == '[' && value[len(value)-1] == ']' {
		value = value[1 : len(value)-1]
	}
	ip, err = netip.ParseAddr(value)
	if err != nil {
		return "", netip.Addr{}, false, fmt.Errorf("invalid --add-host %q: %q is not an IP address (%s)", s, value, want)
	}
	// The resolver reads /etc/hosts addresses with inet_pton, which knows no zones.
	if ip.Zone() != "" {
		return "", netip.Addr{}, false, fmt.Errorf("invalid --add-host %q: /etc/hosts cannot hold the zone of %q (%s)", s, value, want)
	}
	return name, ip, false, nil
}

// ValidHostname reports whether s is a host name by RFC 1123: dot-separated
// labels of 1-63 letters, digits and hyphens that neither start nor end with
// a hyphen, 253 characters at most, and not an IP address. The kernel's own
// hostname (sethostname) is further limited to 64 characters.
func ValidHostname(s string) error {
	if s == "" {
		return errors.New("hostname is empty")
	}
	if len(s) > 253 {
		return fmt.Errorf("hostname %q is %d characters long, the limit is 253", s, len(s))
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return fmt.Errorf("hostname %q is an IP address", s)
	}
	for label := range strings.SplitSeq(s, ".") {
		switch {
		case label == "":
			return fmt.Errorf("hostname %q has an empty label (a leading, trailing or doubled dot)", s)
		case len(label) > 63:
			return fmt.Errorf("hostname %q has label %q of %d characters, the limit is 63", s, label, len(label))
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("hostname %q has label %q that starts or ends with '-'", s, label)
		}
		for _, c := range label {
			if !isLetterOrDigit(c) && c != '-' {
				return fmt.Errorf("hostname %q contains %q; only letters, digits, '-' and '.' are allowed", s, c)
			}
		}
	}
	return nil
}

func isLetterOrDigit(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
