package netstore

import (
	"bytes"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// copyStore copies the files of a testdata store into a fresh directory.
func copyStore(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{networksFileName, leasesFileName} {
		b, err := os.ReadFile(filepath.Join("testdata", from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testdata/v1 was written by netns-run's first versioned format; a newer
// netns-run must read it as it was written, and not rewrite it just by
// reading it.
func TestReadVersion1Store(t *testing.T) {
	dir := copyStore(t, "v1")
	before, err := os.ReadFile(filepath.Join(dir, networksFileName))
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	ns, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Network{
		"bridge":   {Driver: "bridge", Subnet: pfx("172.17.0.0/16"), Gateway: addr("172.17.0.1")},
		"iso":      {Driver: "macvlan", Subnet: pfx("172.18.0.0/16"), Gateway: addr("172.18.0.1"), Options: map[string]string{OptMacvlanMode: "private"}},
		"macvlan1": {Driver: "macvlan", Subnet: pfx("192.168.57.0/24"), Gateway: addr("192.168.57.1"), IPRange: pfx("192.168.57.0/24")},
		"web":      {Driver: "bridge", Subnet: pfx("10.89.0.0/24"), Gateway: addr("10.89.0.1"), IPRange: pfx("10.89.0.128/25"), Internal: true},
	}
	if len(ns) != len(want) {
		t.Fatalf("v1 store lists %v, want %d networks", names(ns), len(want))
	}
	for _, n := range ns {
		w, ok := want[n.Name]
		if !ok || n.Driver != w.Driver || n.Subnet != w.Subnet || n.Gateway != w.Gateway || n.IPRange != w.IPRange ||
			n.Internal != w.Internal || !maps.Equal(n.Options, w.Options) || !isHex64(n.ID) || n.Created.IsZero() {
			t.Errorf("v1 network read as %+v, want %+v", n, w)
		}
	}

	wantLeases := map[string]map[string]netip.Addr{
		"bridge":   {"aaaa2630f8d13cb57fb235dc8a88b12c1f28e8c70dadb85c498b2d79f4a5aea2": addr("172.17.0.2")},
		"web":      {"bbbb0b93e33e35635aeb6c80485767f0c8147388dd0e8562a7ef1eb17a3da6f4": addr("10.89.0.128"), "cccc0b93e33e35635aeb6c80485767f0c8147388dd0e8562a7ef1eb17a3da6f4": addr("10.89.0.129")},
		"macvlan1": {"dddd52df96d3ffc948a5faca889b11d1f177f9dc902517bb1698599fada983b7": addr("192.168.57.2")},
		"iso":      {},
	}
	for name, w := range wantLeases {
		got, err := s.Leases(name)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, w) {
			t.Errorf("v1 leases of %s = %v, want %v", name, got, w)
		}
	}

	// The next free address of web's ip-range follows the stored leases.
	got, err := s.AllocateLease("web", "eeee", netip.Addr{})
	if err != nil || got != addr("10.89.0.130") {
		t.Errorf("AllocateLease on the v1 store = %v, %v; want 10.89.0.130", got, err)
	}
	after, err := os.ReadFile(filepath.Join(dir, networksFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("reading the v1 store rewrote networks.json:\n%s", after)
	}
}
