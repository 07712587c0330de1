package netstore

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// FuzzCreateRequest reads `network create` input as the CLI does (subnets
// and gateways by family, -o KEY=VALUE items) and validates it: a refusal
// is a one-line ErrInvalid, and a network accepted is one a reload of the
// store accepts too, with its gateways inside its subnets.
func FuzzCreateRequest(f *testing.F) {
	f.Add("net1", "", "192.168.57.0/24", "192.168.57.254", "192.168.57.128/25", "", false)
	f.Add("v6", "bridge", "10.1.0.0/16", "", "", "", true)
	f.Add("v6b", "", "fd00:db8:1::/64", "fd00:db8:1::fe", "", "", true)
	f.Add("mv", "macvlan", "10.2.0.0/24", "10.2.0.1", "", "macvlan_mode=private,parent=eth0,promisc=on", false)
	f.Add("mapped", "", "::ffff:10.3.0.0/120", "::ffff:10.3.0.1", "", "", true)
	f.Add("bad", "", "10.0.0.1/24", "10.0.0.255", "10.1.0.0/25", "x=y", false)
	f.Add("private", "ipvlan", "10.0.0.0/31", "", "", "parent=a/b", true)
	f.Add("-x", "", "", "10.0.0.1", "", "", false)
	f.Fuzz(func(t *testing.T, name, driver, subnet, gateway, ipRange, opts string, ipv6 bool) {
		req := CreateRequest{Name: name, Driver: driver, IPv6: ipv6, Options: map[string]string{}}
		for _, s := range strings.Split(subnet, ",") {
			if p, err := netip.ParsePrefix(s); err == nil {
				if p.Addr().Is6() {
					req.Subnet6 = p
				} else {
					req.Subnet = p
				}
			}
		}
		for _, s := range strings.Split(gateway, ",") {
			if a, err := netip.ParseAddr(s); err == nil {
				if a.Is6() {
					req.Gateway6 = a
				} else {
					req.Gateway = a
				}
			}
		}
		if p, err := netip.ParsePrefix(ipRange); err == nil && p.Addr().Is4() {
			req.IPRange = p
		}
		for _, o := range strings.Split(opts, ",") {
			if k, v, ok := strings.Cut(o, "="); ok {
				req.Options[k] = v
			}
		}

		n, err := normalise(req)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%+v: error %q, want a one-line ErrInvalid", req, err)
			}
			return
		}
		checkAccepted(t, req, n)
	})
}

func checkAccepted(t *testing.T, req CreateRequest, n Network) {
	t.Helper()
	if n.Name != req.Name || !ValidName(n.Name) || reserved(n.Name) || n.EnableIPv6 != req.IPv6 {
		t.Fatalf("%+v accepted as %+v", req, n)
	}
	if n.Subnet6.IsValid() {
		if !n.Subnet6.Addr().Is6() || n.Subnet6.Addr().Is4In6() || n.Subnet6 != n.Subnet6.Masked() || !n.Subnet6.Contains(n.Gateway6) {
			t.Fatalf("%+v accepted with IPv6 subnet %v, gateway %v", req, n.Subnet6, n.Gateway6)
		}
	}
	if !n.Subnet.IsValid() {
		return // picked at Create, from the default pools
	}
	if !n.Subnet.Addr().Is4() || n.Subnet != n.Subnet.Masked() || !n.Subnet.Contains(n.Gateway) ||
		(n.IPRange.IsValid() && (!n.Subnet.Contains(n.IPRange.Addr()) || n.IPRange.Bits() < n.Subnet.Bits())) {
		t.Fatalf("%+v accepted as subnet %v, gateway %v, ip-range %v", req, n.Subnet, n.Gateway, n.IPRange)
	}
	if n.EnableIPv6 && !n.Subnet6.IsValid() {
		return // the IPv6 subnet is picked at Create too
	}
	// What Create stores, a reload must take back.
	n.ID = strings.Repeat("ab", 32)
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	var back Network
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s does not read back: %v", b, err)
	}
	if err := back.check(); err != nil {
		t.Fatalf("%+v accepted as %s, which a reload refuses: %v", req, b, err)
	}
}
