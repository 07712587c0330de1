package netstore

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netns-run/netns-run/internal/ipam"
)

// --ipv6 without a subnet picks a ULA /64 from the network's id; with one
// it keeps it and the gateway defaults to ::1; both survive a reopen.
func TestCreateIPv6(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	auto := create(t, s, CreateRequest{Name: "auto", IPv6: true})
	want := fmt.Sprintf("fd%s:%s:%s::/64", auto.ID[0:2], auto.ID[2:6], auto.ID[6:10])
	if !auto.EnableIPv6 || auto.Subnet6 != pfx(want) || auto.Gateway6 != auto.Subnet6.Addr().Next() {
		t.Errorf("--ipv6 alone: %v %s gateway %s, want %s gateway ::1", auto.EnableIPv6, auto.Subnet6, auto.Gateway6, want)
	}
	if !auto.Subnet.IsValid() {
		t.Error("a dual-stack network has no IPv4 subnet")
	}
	given := create(t, s, CreateRequest{Name: "given", IPv6: true, Subnet6: pfx("fd00:db8:1::/64"), Gateway6: addr("fd00:db8:1::fe")})
	if given.Subnet6 != pfx("fd00:db8:1::/64") || given.Gateway6 != addr("fd00:db8:1::fe") {
		t.Errorf("given: %s gateway %s", given.Subnet6, given.Gateway6)
	}
	v4 := create(t, s, CreateRequest{Name: "v4"})
	if v4.EnableIPv6 || v4.Subnet6.IsValid() {
		t.Errorf("a network without --ipv6 got IPv6: %+v", v4)
	}
	ns, err := open(t, dir).List()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		switch n.Name {
		case "auto":
			if !equalNetwork(n, auto) {
				t.Errorf("reopened %+v, want %+v", n, auto)
			}
		case "given":
			if !equalNetwork(n, given) {
				t.Errorf("reopened %+v, want %+v", n, given)
			}
		case BridgeName:
			if n.EnableIPv6 {
				t.Error("the default bridge has IPv6")
			}
		}
	}
}

func TestCreateIPv6Errors(t *testing.T) {
	s := open(t, t.TempDir())
	create(t, s, CreateRequest{Name: "one", IPv6: true, Subnet6: pfx("fd00:db8:1::/64")})
	for _, c := range []struct {
		req  CreateRequest
		kind error
		msg  string
	}{
		{CreateRequest{Name: "a", Subnet6: pfx("fd00:db8:2::/64")}, ErrInvalid, "add --ipv6"},
		{CreateRequest{Name: "a", IPv6: true, Gateway6: addr("fd00:db8:2::1")}, ErrInvalid, "needs an IPv6 --subnet"},
		{CreateRequest{Name: "a", IPv6: true, Subnet6: pfx("fd00:db8:2::1/64")}, ErrInvalid, "host bits"},
		{CreateRequest{Name: "a", IPv6: true, Subnet6: pfx("fd00:db8:2::/48")}, ErrInvalid, "/64 to /126"},
		{CreateRequest{Name: "a", IPv6: true, Subnet6: pfx("fd00:db8:2::/64"), Gateway6: addr("fd00:db8:3::1")}, ErrInvalid, "outside"},
		{CreateRequest{Name: "a", IPv6: true, Subnet6: pfx("fd00:db8:1::/80")}, ErrOverlap, "overlaps network one"},
	} {
		_, err := s.Create(c.req)
		if !errors.Is(err, c.kind) || !strings.Contains(fmt.Sprint(err), c.msg) {
			t.Errorf("Create(%+v) = %v, want %v with %q", c.req, err, c.kind, c.msg)
		}
	}
}

// IPv6 leases: Docker's order, a static --ip6, kept across calls as the
// IPv4 lease is, persisted apart from it, dropped with it.
func TestLeases6(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	n := create(t, s, CreateRequest{Name: "n6", IPv6: true, Subnet6: pfx("fd00:db8:1::/64")})
	a, err := s.AllocateLease6(n.Name, "sb-a", addr(""))
	if err != nil || a != addr("fd00:db8:1::2") {
		t.Fatalf("first lease %s, %v; want fd00:db8:1::2", a, err)
	}
	if again, _ := s.AllocateLease6(n.ID, "sb-a", addr("")); again != a {
		t.Errorf("the same sandbox again got %s, want %s", again, a)
	}
	if _, err := s.AllocateLease6(n.ID, "sb-b", a); !errors.Is(err, ipam.ErrInUse) {
		t.Errorf("a held --ip6: %v, want ErrInUse", err)
	}
	if b, err := s.AllocateLease6(n.ID, "sb-b", addr("fd00:db8:1::99")); err != nil || b != addr("fd00:db8:1::99") {
		t.Errorf("static ::99: %s, %v", b, err)
	}
	if ip4, err := s.AllocateLease(n.ID, "sb-a", addr("")); err != nil || !ip4.Is4() {
		t.Errorf("the IPv4 lease beside it: %s, %v", ip4, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, leasesFileName))
	if err != nil || !strings.Contains(string(b), `"leases6"`) || !strings.Contains(string(b), "fd00:db8:1::99") {
		t.Errorf("leases.json without the IPv6 leases (%v):\n%s", err, b)
	}
	l6, err := open(t, dir).Leases6(n.Name)
	if err != nil || len(l6) != 2 || l6["sb-a"] != a {
		t.Errorf("reopened IPv6 leases %v, %v", l6, err)
	}
	if err := s.DropLease(n.ID, "sb-a"); err != nil {
		t.Fatal(err)
	}
	l4, _ := s.Leases(n.ID)
	l6, _ = s.Leases6(n.ID)
	if _, ok := l4["sb-a"]; ok || len(l6) != 1 {
		t.Errorf("after DropLease: IPv4 %v IPv6 %v", l4, l6)
	}
	if _, err := s.AllocateLease6(BridgeName, "sb-a", addr("")); !errors.Is(err, ErrInvalid) {
		t.Errorf("an IPv6 lease on the IPv4-only bridge: %v, want ErrInvalid", err)
	}
	if err := s.Remove(n.ID, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, leasesFileName)); strings.Contains(string(b), "fd00:db8:1::99") {
		t.Errorf("the removed network's IPv6 leases stayed:\n%s", b)
	}
}

// SetBridgeIPv6 turns the default bridge dual stack and back, as Docker's
// daemon settings do, keeps a picked subnet across calls, refuses while
// the bridge has members, and persists.
func TestSetBridgeIPv6(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	bridge := func(s *Store) Network {
		t.Helper()
		n, err := s.Get(BridgeName)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if changed, err := s.SetBridgeIPv6(false, netip.Prefix{}); err != nil || changed {
		t.Fatalf("off while off: changed %v, %v", changed, err)
	}
	changed, err := s.SetBridgeIPv6(true, netip.Prefix{})
	b := bridge(s)
	if err != nil || !changed || !b.EnableIPv6 || b.Subnet6.Bits() != 64 || !strings.HasPrefix(b.Subnet6.String(), "fd") || b.Gateway6 != b.Subnet6.Addr().Next() {
		t.Fatalf("on: changed %v, %v: %+v", changed, err, b)
	}
	if changed, err := s.SetBridgeIPv6(true, netip.Prefix{}); err != nil || changed || bridge(s).Subnet6 != b.Subnet6 {
		t.Errorf("on again: changed %v, %v; want the picked subnet kept", changed, err)
	}
	if _, err := s.AllocateLease(b.ID, "sb-1", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBridgeIPv6(true, pfx("fd00:b::/64")); !errors.Is(err, ErrHasMembers) {
		t.Errorf("a change with a member: %v, want ErrHasMembers", err)
	}
	if err := s.DropLease(b.ID, "sb-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBridgeIPv6(true, pfx("fd00:b::/64")); err != nil {
		t.Fatal(err)
	}
	if got := bridge(open(t, dir)); got.Subnet6 != pfx("fd00:b::/64") || got.Gateway6 != addr("fd00:b::1") {
		t.Errorf("after a reopen: %s gateway %s; want fd00:b::/64 gateway fd00:b::1", got.Subnet6, got.Gateway6)
	}
	create(t, s, CreateRequest{Name: "v6", IPv6: true, Subnet6: pfx("fd00:c::/64")})
	if _, err := s.SetBridgeIPv6(true, pfx("fd00:c::/64")); !errors.Is(err, ErrOverlap) {
		t.Errorf("a subnet another network has: %v, want ErrOverlap", err)
	}
	for _, bad := range []string{"10.0.0.0/24", "fd00:d::/48", "fd00:d::1/64"} {
		if _, err := s.SetBridgeIPv6(true, pfx(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("fixed-cidr-v6 %s: %v, want ErrInvalid", bad, err)
		}
	}
	if changed, err := s.SetBridgeIPv6(false, netip.Prefix{}); err != nil || !changed || bridge(s).EnableIPv6 || bridge(s).Subnet6.IsValid() {
		t.Errorf("off: changed %v, %v: %+v", changed, err, bridge(s))
	}
}
