package e2e

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// dockerInspect is moby's container.InspectResponse as Docker engines up
// to API 1.51 send it, with the top-level default-bridge addresses that
// moby's current types dropped (API 1.52).
type dockerInspect struct {
	container.InspectResponse
	NetworkSettings *legacyNetworkSettings
}

// legacyNetworkSettings: moby's NetworkSettings and the deprecated fields
// of Docker's NetworkSettingsBase and DefaultNetworkSettings.
type legacyNetworkSettings struct {
	container.NetworkSettings
	Bridge                 string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	SecondaryIPAddresses   []dockerAddress
	SecondaryIPv6Addresses []dockerAddress
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
}

// dockerAddress is Docker's network.Address.
type dockerAddress struct {
	Addr      string
	PrefixLen int
}

// decodeAsDocker decodes out strictly into typed (no field Docker's type
// lacks) and loosely into generic (to see which keys are there).
func decodeAsDocker(t *testing.T, what, out string, typed any, generic *[]map[string]any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(typed); err != nil {
		t.Fatalf("%s as Docker's %T: %v\n%s", what, typed, err, out)
	}
	if err := json.Unmarshal([]byte(out), generic); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantKeys requires each dotted path as a key of obj (null counts), with
// the value encoding/json decodes it to.
func wantKeys(t *testing.T, what string, obj map[string]any, want map[string]any) {
	t.Helper()
paths:
	for path, w := range want {
		var v any = obj
		for _, key := range strings.Split(path, ".") {
			m, _ := v.(map[string]any)
			var ok bool
			if v, ok = m[key]; !ok {
				t.Errorf("%s: no key %s", what, path)
				continue paths
			}
		}
		if !reflect.DeepEqual(v, w) {
			t.Errorf("%s: %s = %#v; want %#v", what, path, v, w)
		}
	}
}

// TestInspectDecodesAsDocker: the real inspect and network inspect output
// decodes into Docker's API types with no unknown field, and carries the
// fields Docker scripts read, with Docker's null-vs-empty conventions.
func TestInspectDecodesAsDocker(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", "172.30.0.0/16", "dtnet")
	u.ok("run", "-d", "--name", "dt-db", "--network", "dtnet", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "dt-web", "--network", "dtnet", "--ip", "172.30.0.9",
		"--link", "dt-db:db", "-e", "FOO=bar", "-p", "127.0.0.1:18250:80", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "dt-peer", "--network", "bridge", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "dt-br", "--network", "bridge", "--link", "dt-peer:peer", "--", probe, "sleep", "60s")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "dt-web", "dt-db", "dt-br", "dt-peer") })

	var typed []dockerInspect
	var c []map[string]any
	decodeAsDocker(t, "inspect", u.ok("inspect", "dt-web", "dt-br").stdout, &typed, &c)
	if len(typed) != 2 || len(c) != 2 {
		t.Fatalf("inspect gave %d objects; want 2", len(c))
	}
	webID := typed[0].ID
	// Off the default bridge Docker keeps --link in the endpoint's Links
	// and leaves HostConfig.Links null.
	wantKeys(t, "inspect dt-web", c[0], map[string]any{
		"NetworkSettings.IPAddress":                  "",
		"NetworkSettings.MacAddress":                 "",
		"NetworkSettings.Gateway":                    "",
		"NetworkSettings.IPPrefixLen":                float64(0),
		"NetworkSettings.SecondaryIPAddresses":       nil,
		"NetworkSettings.Networks.dtnet.IPAMConfig":  map[string]any{"IPv4Address": "172.30.0.9"},
		"NetworkSettings.Networks.dtnet.Aliases":     []any{webID[:12]},
		"NetworkSettings.Networks.dtnet.Links":       []any{"dt-db:db"},
		"NetworkSettings.Networks.dtnet.IPAddress":   "172.30.0.9",
		"NetworkSettings.Networks.dtnet.IPPrefixLen": float64(16),
		"Config.Env":              []any{"FOO=bar"},
		"Config.Hostname":         webID[:12],
		"HostConfig.Links":        nil,
		"HostConfig.PortBindings": map[string]any{"80/tcp": []any{map[string]any{"HostIp": "127.0.0.1", "HostPort": "18250"}}},
	})
	brID := typed[1].ID
	br := typed[1].NetworkSettings
	wantKeys(t, "inspect dt-br", c[1], map[string]any{
		"NetworkSettings.IPAddress":                  br.Networks["bridge"].IPAddress.String(),
		"NetworkSettings.MacAddress":                 br.Networks["bridge"].MacAddress.String(),
		"NetworkSettings.Gateway":                    "172.17.0.1",
		"NetworkSettings.IPPrefixLen":                float64(16),
		"NetworkSettings.SecondaryIPAddresses":       nil,
		"NetworkSettings.Networks.bridge.IPAMConfig": nil,
		"NetworkSettings.Networks.bridge.Aliases":    nil,
		"Config.Env":              []any{},
		"Config.Hostname":         brID[:12],
		"HostConfig.Links":        []any{"/dt-peer:/dt-br/peer"},
		"HostConfig.PortBindings": map[string]any{},
	})
	if ip := br.Networks["bridge"].IPAddress; !netip.MustParsePrefix("172.17.0.0/16").Contains(ip) {
		t.Errorf("dt-br's bridge address %v: want one in 172.17.0.0/16", ip)
	}
	pb := typed[0].HostConfig.PortBindings[network.MustParsePort("80/tcp")]
	if len(pb) != 1 || pb[0].HostIP != netip.MustParseAddr("127.0.0.1") || pb[0].HostPort != "18250" {
		t.Errorf("dt-web's PortBindings as Docker's type: %+v", typed[0].HostConfig.PortBindings)
	}

	var nets []network.Inspect
	var n []map[string]any
	decodeAsDocker(t, "network inspect", u.ok("network", "inspect", "dtnet").stdout, &nets, &n)
	if len(nets) != 1 || len(n) != 1 {
		t.Fatalf("network inspect gave %d objects; want 1", len(n))
	}
	wantKeys(t, "network inspect dtnet", n[0], map[string]any{
		"Scope": "local", "EnableIPv6": false, "IPAM.Driver": "default", "IPAM.Options": map[string]any{},
		"IPAM.Config": []any{map[string]any{"Subnet": "172.30.0.0/16", "Gateway": "172.30.0.1"}},
		"Attachable":  false, "Ingress": false, "ConfigFrom": map[string]any{"Network": ""}, "ConfigOnly": false,
		"Labels": map[string]any{},
	})
	if s, _ := n[0]["Created"].(string); !strings.Contains(s, ".") || nets[0].Created.IsZero() {
		t.Errorf("network inspect Created %q: want RFC 3339 with fractional seconds", s)
	}
	web, ok := nets[0].Containers[webID]
	if !ok || web.Name != "dt-web" || web.IPv4Address != netip.MustParsePrefix("172.30.0.9/16") {
		t.Errorf("network inspect Containers[dt-web] = %+v; want dt-web at 172.30.0.9/16", web)
	}

	// The list form (network.Summary) is the same object without members.
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(u.ok("network", "inspect", "bridge").stdout), &objs); err != nil || len(objs) != 1 {
		t.Fatalf("network inspect bridge: %v", err)
	}
	delete(objs[0], "Containers")
	b, err := json.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	var summaries []network.Summary
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&summaries); err != nil || len(summaries) != 1 || summaries[0].Name != "bridge" {
		t.Errorf("network inspect bridge as Docker's network.Summary: %v %+v", err, summaries)
	}
}
