package netstore

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/netns-run/netns-run/internal/ipam"
)

func pfx(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func create(t *testing.T, s *Store, req CreateRequest) Network {
	t.Helper()
	n, err := s.Create(req)
	if err != nil {
		t.Fatalf("Create(%+v): %v", req, err)
	}
	return n
}

func names(ns []Network) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

func isHex64(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// walkThroughMacvlan is the walk-through's
// network create -d macvlan --subnet 192.168.57.0/24 --gateway 192.168.57.1 --ip-range 192.168.57.0/24 macvlan1
var walkThroughMacvlan = CreateRequest{
	Name: "macvlan1", Driver: "macvlan",
	Subnet: pfx("192.168.57.0/24"), Gateway: addr("192.168.57.1"), IPRange: pfx("192.168.57.0/24"),
}

func TestOpenBuiltinBridge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "netns-run")
	s := open(t, dir)

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir mode %v, want 0700", fi.Mode().Perm())
	}
	ns, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 {
		t.Fatalf("fresh store lists %v, want only bridge", names(ns))
	}
	b := ns[0]
	if b.Name != "bridge" || b.Driver != "bridge" || b.Subnet != pfx("172.17.0.0/16") ||
		b.Gateway != addr("172.17.0.1") || b.IPRange.IsValid() || b.Internal || len(b.Options) != 0 ||
		!isHex64(b.ID) || b.Created.IsZero() || !b.BuiltIn() {
		t.Errorf("bridge = %+v", b)
	}
	if b.ShortID() != b.ID[:12] {
		t.Errorf("ShortID = %q", b.ShortID())
	}

	// Stable across re-Open, and by every way of naming it.
	s2 := open(t, dir)
	for _, ref := range []string{"bridge", b.ID, b.ID[:12], b.ID[:3]} {
		got, err := s2.Get(ref)
		if err != nil {
			t.Fatalf("Get(%q): %v", ref, err)
		}
		if got.ID != b.ID || !got.Created.Equal(b.Created) {
			t.Errorf("Get(%q) after re-Open = %s created %v, want %s created %v", ref, got.ID, got.Created, b.ID, b.Created)
		}
	}

	// Another user's (another directory's) bridge has its own id.
	if other, _ := open(t, t.TempDir()).Get("bridge"); other.ID == b.ID {
		t.Error("two stores share a bridge id")
	}

	// The bridge pool gives the walk-through's first member .2.
	pool, err := b.Pool()
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := pool.Allocate(); a != addr("172.17.0.2") {
		t.Errorf("bridge's first member = %s, want 172.17.0.2", a)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file); err == nil {
		t.Error("Open(regular file) succeeded")
	}
}

func TestCreateDefaults(t *testing.T) {
	s := open(t, t.TempDir())
	steps := []struct {
		req         CreateRequest
		remove      string // instead of creating, remove this network
		wantSubnet  string
		wantGateway string
		wantDriver  string
	}{
		{req: CreateRequest{Name: "n1"}, wantSubnet: "172.18.0.0/16", wantGateway: "172.18.0.1", wantDriver: "bridge"},
		{req: CreateRequest{Name: "n2", Driver: "bridge"}, wantSubnet: "172.19.0.0/16", wantGateway: "172.19.0.1", wantDriver: "bridge"},
		{req: CreateRequest{Name: "explicit", Subnet: pfx("172.20.0.0/16")}, wantSubnet: "172.20.0.0/16", wantGateway: "172.20.0.1", wantDriver: "bridge"},
		{req: CreateRequest{Name: "n3", Driver: "macvlan"}, wantSubnet: "172.21.0.0/16", wantGateway: "172.21.0.1", wantDriver: "macvlan"},
		// a small explicit subnet inside the next default pool makes that pool taken
		{req: CreateRequest{Name: "small", Subnet: pfx("172.22.9.0/24")}, wantSubnet: "172.22.9.0/24", wantGateway: "172.22.9.1", wantDriver: "bridge"},
		{req: CreateRequest{Name: "n4"}, wantSubnet: "172.23.0.0/16", wantGateway: "172.23.0.1", wantDriver: "bridge"},
		// a freed subnet is the next free one again
		{remove: "n1"},
		{req: CreateRequest{Name: "n5"}, wantSubnet: "172.18.0.0/16", wantGateway: "172.18.0.1", wantDriver: "bridge"},
		// explicit gateway elsewhere in the subnet
		{req: CreateRequest{Name: "gw", Subnet: pfx("10.10.0.0/24"), Gateway: addr("10.10.0.254")}, wantSubnet: "10.10.0.0/24", wantGateway: "10.10.0.254", wantDriver: "bridge"},
		// walk-through
		{req: walkThroughMacvlan, wantSubnet: "192.168.57.0/24", wantGateway: "192.168.57.1", wantDriver: "macvlan"},
	}
	for _, st := range steps {
		if st.remove != "" {
			if err := s.Remove(st.remove, nil); err != nil {
				t.Fatalf("Remove(%s): %v", st.remove, err)
			}
			continue
		}
		n := create(t, s, st.req)
		if n.Subnet != pfx(st.wantSubnet) || n.Gateway != addr(st.wantGateway) || n.Driver != st.wantDriver {
			t.Errorf("Create(%s) = %s gw %s driver %s; want %s gw %s driver %s",
				st.req.Name, n.Subnet, n.Gateway, n.Driver, st.wantSubnet, st.wantGateway, st.wantDriver)
		}
		if !isHex64(n.ID) || n.Created.IsZero() || n.Name != st.req.Name {
			t.Errorf("Create(%s) = %+v", st.req.Name, n)
		}
		got, err := s.Get(n.Name)
		if err != nil || !equalNetwork(got, n) {
			t.Errorf("Get(%s) = %+v, %v; want %+v", n.Name, got, err, n)
		}
	}
	ns, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bridge", "explicit", "gw", "macvlan1", "n2", "n3", "n4", "n5", "small"}
	if got := names(ns); !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}

func TestCreateDefaultPoolsExhausted(t *testing.T) {
	s := open(t, t.TempDir())
	var want []string
	for b := 18; b <= 31; b++ {
		want = append(want, fmt.Sprintf("172.%d.0.0/16", b))
	}
	for b := 0; b < 256; b += 16 {
		want = append(want, fmt.Sprintf("192.168.%d.0/20", b))
	}
	for i, w := range want {
		n := create(t, s, CreateRequest{Name: fmt.Sprintf("net%02d", i)})
		if n.Subnet.String() != w {
			t.Fatalf("network %d got %s, want %s", i, n.Subnet, w)
		}
	}
	_, err := s.Create(CreateRequest{Name: "one-too-many"})
	const msg = "no free subnet left in the default pools (172.17.0.0/16-172.31.0.0/16, 192.168.0.0/16 in /20s): pass --subnet or remove a network"
	if err == nil || err.Error() != msg || !errors.Is(err, ErrNoSubnet) {
		t.Fatalf("Create past the pools = %v, want %q", err, msg)
	}
	// An explicit subnet still works.
	create(t, s, CreateRequest{Name: "explicit", Subnet: pfx("10.0.0.0/24")})
}

func TestCreateOptionsAndFlags(t *testing.T) {
	s := open(t, t.TempDir())
	opts := map[string]string{"macvlan_mode": "private", "parent": "eth0.10", "promisc": "on"}
	n := create(t, s, CreateRequest{Name: "mv", Driver: "macvlan", Internal: true, Options: opts})
	if !n.Internal || !maps.Equal(n.Options, opts) {
		t.Errorf("Create = %+v", n)
	}
	opts["parent"] = "changed" // the store keeps its own copy
	if got, _ := s.Get("mv"); got.Options["parent"] != "eth0.10" {
		t.Errorf("stored options follow the caller's map: %v", got.Options)
	}
	for i, o := range []map[string]string{
		{"macvlan_mode": "bridge"},
		{"promisc": "off"},
		{"parent": "wlp3s0"},
		{},
		nil,
	} {
		name := fmt.Sprintf("mv-%d", i)
		if _, err := s.Create(CreateRequest{Name: name, Driver: "macvlan", Options: o}); err != nil {
			t.Errorf("macvlan options %v: %v", o, err)
		}
	}
}

func TestCreateErrors(t *testing.T) {
	long := strings.Repeat("x", 16)
	tests := []struct {
		name string
		req  CreateRequest
		want string
		kind error
	}{
		{"duplicate name", walkThroughMacvlan,
			"network with name macvlan1 already exists", ErrExists},
		{"duplicate name, other settings", CreateRequest{Name: "macvlan1"},
			"network with name macvlan1 already exists", ErrExists},
		{"overlaps bridge", CreateRequest{Name: "x", Subnet: pfx("172.17.5.0/24")},
			"subnet 172.17.5.0/24 overlaps network bridge (172.17.0.0/16): pick another --subnet", ErrOverlap},
		{"equals bridge", CreateRequest{Name: "x", Subnet: pfx("172.17.0.0/16")},
			"subnet 172.17.0.0/16 overlaps network bridge (172.17.0.0/16): pick another --subnet", ErrOverlap},
		{"inside an existing network", CreateRequest{Name: "x", Subnet: pfx("192.168.57.128/25")},
			"subnet 192.168.57.128/25 overlaps network macvlan1 (192.168.57.0/24): pick another --subnet", ErrOverlap},
		{"around an existing network", CreateRequest{Name: "x", Subnet: pfx("192.168.0.0/16")},
			"subnet 192.168.0.0/16 overlaps network macvlan1 (192.168.57.0/24): pick another --subnet", ErrOverlap},
		{"gateway outside subnet", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/16"), Gateway: addr("10.6.0.1")},
			"gateway 10.6.0.1 is outside subnet 10.5.0.0/16: pick a gateway inside the subnet", ErrInvalid},
		{"gateway is the network address", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/16"), Gateway: addr("10.5.0.0")},
			"gateway 10.5.0.0 is the network address of 10.5.0.0/16: pick another gateway, such as 10.5.0.1", ErrInvalid},
		{"gateway is the broadcast address", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/16"), Gateway: addr("10.5.255.255")},
			"gateway 10.5.255.255 is the broadcast address of 10.5.0.0/16: pick another gateway, such as 10.5.0.1", ErrInvalid},
		{"ip-range outside subnet", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/16"), IPRange: pfx("10.6.0.0/24")},
			"ip-range 10.6.0.0/24 is outside subnet 10.5.0.0/16: pick a range inside the subnet", ErrInvalid},
		{"ip-range wider than subnet", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/16"), IPRange: pfx("10.0.0.0/8")},
			"ip-range 10.0.0.0/8 is outside subnet 10.5.0.0/16: pick a range inside the subnet", ErrInvalid},
		{"gateway without subnet", CreateRequest{Name: "x", Gateway: addr("10.5.0.1")},
			"--gateway 10.5.0.1 needs --subnet: give the subnet the gateway belongs to", ErrInvalid},
		{"ip-range without subnet", CreateRequest{Name: "x", IPRange: pfx("10.5.0.0/24")},
			"--ip-range 10.5.0.0/24 needs --subnet: give the subnet the range belongs to", ErrInvalid},
		{"subnet host bits", CreateRequest{Name: "x", Subnet: pfx("10.5.3.4/16")},
			"subnet 10.5.3.4/16 has host bits set: use 10.5.0.0/16", ErrInvalid},
		{"ip-range host bits", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/16"), IPRange: pfx("10.5.3.7/24")},
			"ip-range 10.5.3.7/24 has host bits set: use 10.5.3.0/24", ErrInvalid},
		{"IPv6 subnet", CreateRequest{Name: "x", Subnet: pfx("fd00::/64")},
			"subnet fd00::/64 is not IPv4: only IPv4 networks are supported for now", ErrInvalid},
		{"IPv6 ip-range", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/16"), IPRange: pfx("fd00::/120")},
			"ip-range fd00::/120 is not IPv4: only IPv4 networks are supported for now", ErrInvalid},
		{"subnet too small", CreateRequest{Name: "x", Subnet: pfx("10.5.0.0/31")},
			"subnet 10.5.0.0/31 is too small: use a /30 or larger", ErrInvalid},
		{"unknown driver", CreateRequest{Name: "x", Driver: "x"},
			`unknown driver "x": want bridge or macvlan`, ErrInvalid},
		{"driver case matters", CreateRequest{Name: "x", Driver: "Bridge"},
			`unknown driver "Bridge": want bridge or macvlan`, ErrInvalid},
		{"no name", CreateRequest{},
			"no network name given: netns-run network create [OPTIONS] NAME", ErrInvalid},
		{"name starts with -", CreateRequest{Name: "-x"},
			`invalid network name "-x": use letters, digits, '_', '.' and '-', starting with a letter or digit`, ErrInvalid},
		{"name starts with _", CreateRequest{Name: "_x"},
			`invalid network name "_x": use letters, digits, '_', '.' and '-', starting with a letter or digit`, ErrInvalid},
		{"name starts with .", CreateRequest{Name: ".x"},
			`invalid network name ".x": use letters, digits, '_', '.' and '-', starting with a letter or digit`, ErrInvalid},
		{"name with space", CreateRequest{Name: "a b"},
			`invalid network name "a b": use letters, digits, '_', '.' and '-', starting with a letter or digit`, ErrInvalid},
		{"name with slash", CreateRequest{Name: "a/b"},
			`invalid network name "a/b": use letters, digits, '_', '.' and '-', starting with a letter or digit`, ErrInvalid},
		{"name non-ASCII", CreateRequest{Name: "netzé"},
			`invalid network name "netzé": use letters, digits, '_', '.' and '-', starting with a letter or digit`, ErrInvalid},
		{"reserved bridge", CreateRequest{Name: "bridge"},
			`network name "bridge" is reserved: pick another name`, ErrInvalid},
		{"reserved host", CreateRequest{Name: "host"},
			`network name "host" is reserved: pick another name`, ErrInvalid},
		{"reserved none", CreateRequest{Name: "none"},
			`network name "none" is reserved: pick another name`, ErrInvalid},
		{"reserved private", CreateRequest{Name: "private"},
			`network name "private" is reserved: pick another name`, ErrInvalid},
		{"bridge takes no options", CreateRequest{Name: "x", Options: map[string]string{"parent": "eth0"}},
			`unknown option "parent" for driver bridge: the bridge driver takes no -o options`, ErrInvalid},
		{"unknown macvlan option", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"mtu": "1500"}},
			`unknown option "mtu" for driver macvlan: want macvlan_mode, parent or promisc`, ErrInvalid},
		{"empty option key", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"": "x"}},
			`unknown option "" for driver macvlan: want macvlan_mode, parent or promisc`, ErrInvalid},
		{"macvlan_mode vepa", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"macvlan_mode": "vepa"}},
			`invalid macvlan_mode "vepa": want bridge or private`, ErrInvalid},
		{"macvlan_mode passthru", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"macvlan_mode": "passthru"}},
			`invalid macvlan_mode "passthru": want bridge or private`, ErrInvalid},
		{"macvlan_mode empty", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"macvlan_mode": ""}},
			`invalid macvlan_mode "": want bridge or private`, ErrInvalid},
		{"promisc yes", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"promisc": "yes", "parent": "eth0"}},
			`invalid promisc "yes": want on or off`, ErrInvalid},
		{"promisc without parent", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"promisc": "on"}},
			"promisc=on needs parent=IFACE: it makes the parent interface promiscuous", ErrInvalid},
		{"parent with slash", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"parent": "eth0/1"}},
			`invalid parent "eth0/1": want a host interface name such as eth0`, ErrInvalid},
		{"parent too long", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"parent": long}},
			`invalid parent "` + long + `": want a host interface name such as eth0`, ErrInvalid},
		{"parent empty", CreateRequest{Name: "x", Driver: "macvlan", Options: map[string]string{"parent": ""}},
			`invalid parent "": want a host interface name such as eth0`, ErrInvalid},
	}
	dir := t.TempDir()
	s := open(t, dir)
	create(t, s, walkThroughMacvlan)
	before, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	fileBefore := readFile(t, filepath.Join(dir, "networks.json"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := s.Create(tt.req)
			if err == nil {
				t.Fatalf("Create succeeded: %+v", n)
			}
			if err.Error() != tt.want {
				t.Errorf("err = %q\nwant  %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(err, %v) = false", tt.kind)
			}
			after, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			if !equalNetworks(after, before) {
				t.Errorf("failed Create changed the store: %v", names(after))
			}
			if got := readFile(t, filepath.Join(dir, "networks.json")); got != fileBefore {
				t.Errorf("failed Create rewrote networks.json")
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"a", "A", "0", "macvlan1", "my-net", "my_net", "my.net", "A-1_b.c", "0abc", "Bridge", "HOST", "x--", strings.Repeat("a", 200)} {
		if !ValidName(name) {
			t.Errorf("ValidName(%q) = false", name)
		}
	}
	for _, name := range []string{"", "-a", "_a", ".a", "a b", "a/b", "a:b", "a@b", "é", "a\n", "a\x00"} {
		if ValidName(name) {
			t.Errorf("ValidName(%q) = true", name)
		}
	}
}

func TestGet(t *testing.T) {
	s := open(t, t.TempDir())
	// 17 ids with 16 possible first digits: two share a first digit.
	var all []Network
	for i := range 16 {
		all = append(all, create(t, s, CreateRequest{Name: fmt.Sprintf("net%d", i)}))
	}
	bridge, err := s.Get("bridge")
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, bridge)
	byDigit := map[byte][]Network{}
	for _, n := range all {
		byDigit[n.ID[0]] = append(byDigit[n.ID[0]], n)
	}
	var shared string
	for d, ns := range byDigit {
		if len(ns) > 1 {
			shared = string(d)
		}
	}

	tests := []struct {
		ref     string
		wantID  string
		wantErr string
		kind    error
	}{
		{ref: all[3].Name, wantID: all[3].ID},
		{ref: all[3].ID, wantID: all[3].ID},
		{ref: all[3].ShortID(), wantID: all[3].ID},
		{ref: uniquePrefix(all, all[5]), wantID: all[5].ID},
		{ref: "bridge", wantID: bridge.ID},
		{ref: "nope", wantErr: `network "nope" not found: see netns-run network ls`, kind: ErrNotFound},
		{ref: "", wantErr: `network "" not found: see netns-run network ls`, kind: ErrNotFound},
		{ref: all[3].ID + "0", wantErr: fmt.Sprintf("network %q not found: see netns-run network ls", all[3].ID+"0"), kind: ErrNotFound},
		{ref: strings.ToUpper(all[3].ID[:12]), wantErr: fmt.Sprintf("network %q not found: see netns-run network ls", strings.ToUpper(all[3].ID[:12])), kind: ErrNotFound},
		{ref: shared, wantErr: fmt.Sprintf("network id prefix %q matches %d networks: give more digits or the name", shared, len(byDigit[shared[0]])), kind: ErrAmbiguous},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := s.Get(tt.ref)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !errors.Is(err, tt.kind) {
					t.Fatalf("Get(%q) = %v, %v; want %q", tt.ref, got.Name, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.ID != tt.wantID {
				t.Fatalf("Get(%q) = %s, %v; want id %s", tt.ref, got.ID, err, tt.wantID)
			}
		})
	}

	// A name wins over an id prefix (as Docker): name a network after the
	// first digits of the bridge's id.
	prefix := bridge.ID[:6]
	if !ValidName(prefix) {
		t.Fatalf("%q is not a valid name", prefix)
	}
	named := create(t, s, CreateRequest{Name: prefix, Subnet: pfx("10.99.0.0/24")})
	if got, err := s.Get(prefix); err != nil || got.ID != named.ID {
		t.Errorf("Get(%q) = %s, %v; want the network named %q", prefix, got.Name, err, prefix)
	}
}

func uniquePrefix(all []Network, n Network) string {
	for l := 1; l <= len(n.ID); l++ {
		p := n.ID[:l]
		count := 0
		for _, o := range all {
			if strings.HasPrefix(o.ID, p) {
				count++
			}
		}
		if count == 1 {
			return p
		}
	}
	return n.ID
}

func TestRemove(t *testing.T) {
	s := open(t, t.TempDir())
	bridge, _ := s.Get("bridge")
	mv := create(t, s, walkThroughMacvlan)
	other := create(t, s, CreateRequest{Name: "other"})
	if err := setLease(s, mv.ID, "sb1", addr("192.168.57.2")); err != nil {
		t.Fatal(err)
	}
	if err := setLease(s, other.ID, "sb1", addr("172.18.0.2")); err != nil {
		t.Fatal(err)
	}
	busy := errors.New("network macvlan1 has active sandboxes: stop them first")

	tests := []struct {
		name    string
		ref     string
		check   func(Network) error
		wantErr string
		kind    error
	}{
		{"bridge by name", "bridge", nil, "bridge is a pre-defined network and cannot be removed", ErrBuiltin},
		{"bridge by id", bridge.ID, nil, "bridge is a pre-defined network and cannot be removed", ErrBuiltin},
		{"bridge by prefix", bridge.ID[:12], nil, "bridge is a pre-defined network and cannot be removed", ErrBuiltin},
		{"unknown", "nope", nil, `network "nope" not found: see netns-run network ls`, ErrNotFound},
		{"in use (check refuses)", "macvlan1", func(n Network) error {
			if n.ID != mv.ID {
				t.Errorf("check got %s, want macvlan1", n.Name)
			}
			return busy
		}, busy.Error(), busy},
		{"removed by short id", mv.ShortID(), func(Network) error { return nil }, "", nil},
		{"already removed", "macvlan1", nil, `network "macvlan1" not found: see netns-run network ls`, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := s.List()
			err := s.Remove(tt.ref, tt.check)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Remove(%s): %v", tt.ref, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, tt.kind) {
				t.Fatalf("Remove(%s) = %v, want %q", tt.ref, err, tt.wantErr)
			}
			if after, _ := s.List(); !equalNetworks(after, before) {
				t.Errorf("failed Remove changed the store: %v", names(after))
			}
		})
	}

	if got, _ := s.List(); !slices.Equal(names(got), []string{"bridge", "other"}) {
		t.Errorf("List = %v", names(got))
	}
	// Removing dropped macvlan1's leases, from the file too, and left other's.
	data := readFile(t, filepath.Join(s.Dir(), "leases.json"))
	if strings.Contains(data, mv.ID) || !strings.Contains(data, other.ID) {
		t.Errorf("leases.json after removing macvlan1:\n%s", data)
	}
	// The name and the subnet are free again; the new network has no leases.
	again := create(t, s, walkThroughMacvlan)
	if again.ID == mv.ID {
		t.Error("re-created network reuses the old id")
	}
	if l, err := s.Leases("macvlan1"); err != nil || len(l) != 0 {
		t.Errorf("Leases of re-created macvlan1 = %v, %v; want none", l, err)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	reqs := []CreateRequest{
		walkThroughMacvlan,
		{Name: "mv2", Driver: "macvlan", Subnet: pfx("10.1.0.0/16"), IPRange: pfx("10.1.4.0/22"), Gateway: addr("10.1.255.254"),
			Internal: true, Options: map[string]string{"macvlan_mode": "private", "parent": "wlp3s0", "promisc": "on"}},
		{Name: "auto"},
		{Name: "internal", Internal: true},
	}
	var created []Network
	for _, r := range reqs {
		created = append(created, create(t, s, r))
	}
	want, err := s.List()
	if err != nil {
		t.Fatal(err)
	}

	s2 := open(t, dir)
	got, err := s2.List()
	if err != nil {
		t.Fatal(err)
	}
	if !equalNetworks(got, want) {
		t.Fatalf("after re-Open:\n got %+v\nwant %+v", got, want)
	}
	for _, n := range created {
		g, err := s2.Get(n.ID)
		if err != nil || !equalNetwork(g, n) {
			t.Errorf("Get(%s) after re-Open = %+v, %v; want %+v", n.Name, g, err, n)
		}
	}
	// The next default subnet takes the persisted ones into account.
	// (auto and internal hold 172.18 and 172.19).
	if n := create(t, s2, CreateRequest{Name: "next"}); n.Subnet != pfx("172.20.0.0/16") {
		t.Errorf("next default subnet after re-Open = %s, want 172.20.0.0/16", n.Subnet)
	}

	// Files are 0600, and no temporary files are left behind; the
	// version before the last write is kept.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	if want := []string{"lock", "networks.json", "networks.json.bak"}; !slices.Equal(files, want) {
		t.Errorf("store dir holds %v, want %v", files, want)
	}
}

func TestCorruptFiles(t *testing.T) {
	tests := []struct {
		name, file, content, wantSub string
	}{
		{"garbage networks", "networks.json", "{not json", "fix or remove the file"},
		{"garbage leases", "leases.json", "[1,2", "fix or remove the file"},
		{"future version", "networks.json", `{"version": 2, "networks": []}`, "format version 2"},
		{"bad id", "networks.json", `{"version":1,"networks":[{"id":"xyz","name":"a","driver":"bridge","subnet":"10.0.0.0/24","gateway":"10.0.0.1","created":"2024-01-01T00:00:00Z"}]}`, `network "a": id "xyz" is not 64 hex digits`},
		{"gateway outside", "networks.json", `{"version":1,"networks":[{"id":"` + strings.Repeat("a", 64) + `","name":"a","driver":"bridge","subnet":"10.0.0.0/24","gateway":"10.0.1.1","created":"2024-01-01T00:00:00Z"}]}`, "gateway 10.0.1.1 is outside subnet"},
		{"unknown field", "networks.json", `{"version":1,"networks":[],"extra":1}`, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantSub) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open = %v, want an error naming %s with %q", err, path, tt.wantSub)
			}
			if got := readFile(t, path); got != tt.content {
				t.Errorf("Open rewrote the corrupt file")
			}
		})
	}
}

func TestBridgeRecreatedIfMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "networks.json"), []byte(`{"version":1,"networks":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	b1, err := s.Get("bridge")
	if err != nil {
		t.Fatal(err)
	}
	// A failing operation still keeps the bridge it had to add.
	if _, err := s.Create(CreateRequest{Name: "host"}); err == nil {
		t.Fatal("Create(host) succeeded")
	}
	b2, err := open(t, dir).Get("bridge")
	if err != nil || b2.ID != b1.ID {
		t.Errorf("bridge id not stable: %s then %s (%v)", b1.ID, b2.ID, err)
	}
}

func TestLeases(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	mv := create(t, s, walkThroughMacvlan)

	// The walk-through: mac-nasa gets .2, mac-nasa2 .3.
	a1, err := s.AllocateLease("macvlan1", "mac-nasa", netip.Addr{})
	if err != nil || a1 != addr("192.168.57.2") {
		t.Fatalf("first AllocateLease = %s, %v; want 192.168.57.2", a1, err)
	}
	a2, err := s.AllocateLease(mv.ID, "mac-nasa2", netip.Addr{})
	if err != nil || a2 != addr("192.168.57.3") {
		t.Fatalf("second AllocateLease = %s, %v; want 192.168.57.3", a2, err)
	}
	// Asking again keeps the sandbox's lease.
	if a, err := s.AllocateLease(mv.ShortID(), "mac-nasa", netip.Addr{}); err != nil || a != a1 {
		t.Errorf("AllocateLease for a sandbox with a lease = %s, %v; want %s", a, err, a1)
	}
	// Static addresses.
	if a, err := s.AllocateLease("macvlan1", "static", addr("192.168.57.50")); err != nil || a != addr("192.168.57.50") {
		t.Errorf("static AllocateLease = %s, %v", a, err)
	}
	if err := setLease(s, "macvlan1", "set", addr("192.168.57.4")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		network string
		sandbox string
		ip      string
		want    string
		kind    error
	}{
		{"held by another sandbox", "macvlan1", "other", "192.168.57.2",
			"address 192.168.57.2 is already in use by another sandbox", ipam.ErrInUse},
		{"outside subnet", "macvlan1", "other", "10.0.0.2",
			"address 10.0.0.2 is outside subnet 192.168.57.0/24: pick an address inside the subnet", ipam.ErrInvalid},
		{"gateway", "macvlan1", "other", "192.168.57.1",
			"address 192.168.57.1 is the gateway of 192.168.57.0/24: pick another address", ipam.ErrInvalid},
		{"broadcast", "macvlan1", "other", "192.168.57.255",
			"address 192.168.57.255 is the broadcast address of 192.168.57.0/24: pick another address", ipam.ErrInvalid},
		{"unknown network", "nope", "other", "192.168.57.9",
			`network "nope" not found: see netns-run network ls`, ErrNotFound},
		{"no sandbox id", "macvlan1", "", "192.168.57.9",
			"allocating an address: no sandbox id given", ErrInvalid},
	}
	before, _ := s.Leases("macvlan1")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.AllocateLease(tt.network, tt.sandbox, addr(tt.ip))
			if err == nil || err.Error() != tt.want || !errors.Is(err, tt.kind) {
				t.Fatalf("AllocateLease = %v, want %q", err, tt.want)
			}
			if after, _ := s.Leases("macvlan1"); !maps.Equal(after, before) {
				t.Errorf("failed lease changed the leases: %v", after)
			}
		})
	}

	// Leases survive a restart (re-Open), and the restarted store never
	// hands a leased address out again.
	s2 := open(t, dir)
	want := map[string]netip.Addr{
		"mac-nasa": addr("192.168.57.2"), "mac-nasa2": addr("192.168.57.3"),
		"static": addr("192.168.57.50"), "set": addr("192.168.57.4"),
	}
	got, err := s2.Leases(mv.ID)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("Leases after re-Open = %v, %v; want %v", got, err, want)
	}
	got["mutated"] = addr("192.168.57.99") // the map is the caller's
	if again, _ := s2.Leases(mv.ID); len(again) != len(want) {
		t.Error("Leases returned the store's own map")
	}
	if a, err := s2.AllocateLease("macvlan1", "mac-nasa3", netip.Addr{}); err != nil || a != addr("192.168.57.5") {
		t.Errorf("AllocateLease after re-Open = %s, %v; want 192.168.57.5", a, err)
	}
	// The daemon's restart path: rebuild the pool from the leases.
	pool, err := mv.Pool()
	if err != nil {
		t.Fatal(err)
	}
	leases, _ := s2.Leases(mv.ID)
	for _, ip := range leases {
		if err := pool.Reserve(ip); err != nil {
			t.Fatal(err)
		}
	}
	if a, _ := pool.Allocate(); a != addr("192.168.57.6") {
		t.Errorf("pool rebuilt from leases allocates %s, want 192.168.57.6", a)
	}

	// Moving a sandbox's lease frees its old address.
	if err := setLease(s2, "macvlan1", "mac-nasa", addr("192.168.57.60")); err != nil {
		t.Fatal(err)
	}
	if a, err := s2.AllocateLease("macvlan1", "newcomer", netip.Addr{}); err != nil || a != addr("192.168.57.2") {
		t.Errorf("after moving mac-nasa, AllocateLease = %s, %v; want 192.168.57.2", a, err)
	}
	// Setting the same lease again is fine.
	if err := setLease(s2, "macvlan1", "mac-nasa", addr("192.168.57.60")); err != nil {
		t.Errorf("repeating a lease: %v", err)
	}

	// Drop, idempotently; the address is free again.
	for range 2 {
		if err := s2.DropLease("macvlan1", "mac-nasa2"); err != nil {
			t.Fatalf("DropLease: %v", err)
		}
	}
	if err := s2.DropLease("nope", "x"); err != nil {
		t.Errorf("DropLease on an unknown network: %v", err)
	}
	if a, err := s2.AllocateLease("macvlan1", "late", netip.Addr{}); err != nil || a != addr("192.168.57.3") {
		t.Errorf("AllocateLease after DropLease = %s, %v; want 192.168.57.3", a, err)
	}
	if got, _ := open(t, dir).Leases("macvlan1"); got["mac-nasa2"].IsValid() || got["late"] != addr("192.168.57.3") {
		t.Errorf("leases after drop and re-Open: %v", got)
	}

	// Leases are per network: the same address on another network is fine.
	if err := setLease(s2, "bridge", "mac-nasa", addr("172.17.0.2")); err != nil {
		t.Fatal(err)
	}
	if err := setLease(s2, "bridge", "sb2", addr("172.17.0.3")); err != nil {
		t.Fatal(err)
	}
	if l, _ := s2.Leases("bridge"); len(l) != 2 {
		t.Errorf("bridge leases = %v", l)
	}
	if l, err := s2.Leases("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Leases(nope) = %v, %v; want ErrNotFound", l, err)
	}
}

func TestLeaseExhaustion(t *testing.T) {
	s := open(t, t.TempDir())
	create(t, s, CreateRequest{Name: "tiny", Subnet: pfx("192.168.57.0/30")})
	if a, err := s.AllocateLease("tiny", "a", netip.Addr{}); err != nil || a != addr("192.168.57.2") {
		t.Fatalf("AllocateLease = %s, %v", a, err)
	}
	_, err := s.AllocateLease("tiny", "b", netip.Addr{})
	const want = "no free address in 192.168.57.0/30: remove a sandbox or widen --ip-range"
	if err == nil || err.Error() != want || !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("AllocateLease on a full network = %v, want %q", err, want)
	}
}

func TestConcurrentCreate(t *testing.T) {
	dir := t.TempDir()
	shared := open(t, dir)
	const workers, each = 8, 3
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			// Half share one Store, half have their own (as separate
			// processes would, each with its own lock-file descriptor).
			s := shared
			if w%2 == 1 {
				var err error
				if s, err = Open(dir); err != nil {
					errs <- err
					return
				}
			}
			for i := range each {
				if _, err := s.Create(CreateRequest{Name: fmt.Sprintf("w%d-%d", w, i)}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkDistinct(t, dir, 1+workers*each)
}

func TestConcurrentDuplicateName(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	const workers = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, exists := 0, 0
	for range workers {
		wg.Go(func() {
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			_, err = s.Create(CreateRequest{Name: "same"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrExists):
				exists++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || exists != workers-1 {
		t.Errorf("%d creates succeeded and %d saw ErrExists; want 1 and %d", ok, exists, workers-1)
	}
}

func TestConcurrentAllocateLease(t *testing.T) {
	dir := t.TempDir()
	create(t, open(t, dir), CreateRequest{Name: "n", Subnet: pfx("10.0.0.0/24")})
	const workers, each = 6, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			for i := range each {
				if _, err := s.AllocateLease("n", fmt.Sprintf("sb%d-%d", w, i), netip.Addr{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	leases, err := open(t, dir).Leases("n")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != workers*each {
		t.Fatalf("%d leases, want %d", len(leases), workers*each)
	}
	seen := map[netip.Addr]string{}
	for sb, ip := range leases {
		if o, dup := seen[ip]; dup {
			t.Errorf("%s leased to %s and %s", ip, o, sb)
		}
		seen[ip] = sb
	}
	// And they are exactly the lowest ones: .2 .. .61.
	for i := 2; i < 2+workers*each; i++ {
		if _, ok := seen[netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})]; !ok {
			t.Errorf("10.0.0.%d not leased", i)
		}
	}
}

// helperEnv makes the test binary a store client: TestHelperProcess creates
// networks in the directory it names and exits.
const helperEnv = "NETSTORE_TEST_HELPER_DIR"

func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestTwoProcesses")
	}
	tag := os.Getenv(helperEnv + "_TAG")
	for i := range 5 {
		// Each create opens the store afresh, as separate CLI calls would.
		s, err := Open(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if _, err := s.Create(CreateRequest{Name: fmt.Sprintf("%s-%d", tag, i)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
	}
	os.Exit(0)
}

func TestTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs = 4
	var wg sync.WaitGroup
	for p := range procs {
		wg.Go(func() {
			cmd := execSelf(t, "^TestHelperProcess$")
			cmd.Env = append(os.Environ(), helperEnv+"="+dir, fmt.Sprintf("%s_TAG=p%d", helperEnv, p))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("helper %d: %v\n%s", p, err, out)
			}
		})
	}
	wg.Wait()
	checkDistinct(t, dir, 1+procs*5)
}

// checkDistinct checks the store in dir holds want networks with pairwise
// disjoint subnets and distinct ids.
func checkDistinct(t *testing.T, dir string, want int) {
	t.Helper()
	ns, err := open(t, dir).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != want {
		t.Fatalf("store holds %d networks (%v), want %d", len(ns), names(ns), want)
	}
	ids := map[string]bool{}
	for i, a := range ns {
		if ids[a.ID] {
			t.Errorf("duplicate id %s", a.ID)
		}
		ids[a.ID] = true
		for _, b := range ns[i+1:] {
			if a.Subnet.Overlaps(b.Subnet) {
				t.Errorf("%s (%s) overlaps %s (%s)", a.Name, a.Subnet, b.Name, b.Subnet)
			}
		}
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	tests := []struct{ xdg, want string }{
		{"/data", "/data/netns-run"},
		{"", "/home/u/.local/share/netns-run"},
		{"relative/dir", "/home/u/.local/share/netns-run"}, // the XDG spec: relative paths are ignored
	}
	for _, tt := range tests {
		t.Setenv("XDG_DATA_HOME", tt.xdg)
		got, err := DefaultDir()
		if err != nil || got != tt.want {
			t.Errorf("XDG_DATA_HOME=%q: DefaultDir = %q, %v; want %q", tt.xdg, got, err, tt.want)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func equalNetwork(a, b Network) bool {
	if !a.Created.Equal(b.Created) {
		return false
	}
	a.Created = b.Created
	if len(a.Options) == 0 && len(b.Options) == 0 {
		a.Options, b.Options = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func equalNetworks(a, b []Network) bool {
	return slices.EqualFunc(a, b, equalNetwork)
}

// execSelf runs this test binary again, limited to the tests matching run.
func execSelf(t *testing.T, run string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command(exe, "-test.run="+run, "-test.count=1")
}

// setLease leases ip to sandboxID, as a static --ip does.
func setLease(s *Store, networkID, sandboxID string, ip netip.Addr) error {
	got, err := s.AllocateLease(networkID, sandboxID, ip)
	if err == nil && got != ip {
		return fmt.Errorf("AllocateLease(%s, %s, %s) leased %s", networkID, sandboxID, ip, got)
	}
	return err
}
