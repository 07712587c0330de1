//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/registry"
)

// dockerInspect is moby's container.InspectResponse as Docker engines up
// to API 1.51 send it: moby's current types dropped the top-level
// default-bridge addresses of NetworkSettings (API 1.52), which the engines
// scripts meet still print and the issue asks for.
type dockerInspect struct {
	container.InspectResponse
	NetworkSettings *legacyNetworkSettings
}

// legacyNetworkSettings adds to moby's NetworkSettings the deprecated
// fields of Docker's NetworkSettingsBase and DefaultNetworkSettings, with
// their names and types.
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

// decodeStrict decodes b into out, refusing any field out's type lacks.
func decodeStrict(t *testing.T, b []byte, out any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("decoding as Docker's %T: %v\n%s", out, err, b)
	}
}

// inspectJSON is what `inspect` and `network inspect` print for views.
func inspectJSON[T any](t *testing.T, views []T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeInspect(&buf, "", views); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jsonPath is the value at a dotted path of a decoded JSON object, and
// whether every key on the way is there (a null counts as there).
func jsonPath(obj map[string]any, path string) (any, bool) {
	var v any = obj
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[key]; !ok {
			return nil, false
		}
	}
	return v, true
}

// checkFields requires each path as a key of obj, with the value want
// gives it as encoding/json decodes it (nil for null, []any{} for []).
func checkFields(t *testing.T, what string, obj map[string]any, want map[string]any) {
	t.Helper()
	for path, w := range want {
		got, ok := jsonPath(obj, path)
		if !ok {
			t.Errorf("%s: no key %s", what, path)
			continue
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s: %s = %#v; want %#v", what, path, got, w)
		}
	}
}

const (
	webID = "3f2a9c1e5b7d40112233445566778899aabbccddeeff00112233445566778899"
	brID  = "7e1d0c2b3a4958667788990011223344556677889900aabbccddeeff00112233"
	netID = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
)

var created = time.Date(2026, 12, 3, 14, 0, 0, 123456789, time.UTC)

// webRecord is a member of a user-defined network with a static --ip, a
// link, a published port and -e.
func webRecord() registry.Record {
	return registry.Record{ID: webID, Name: "web", Hostname: webID[:12], Network: "appnet", NetworkID: netID,
		IP: netip.MustParseAddr("172.29.0.9"), StaticIP: true, Prefix: 16, Gateway: netip.MustParseAddr("172.29.0.1"),
		MAC: "02:42:ac:1d:00:09", Aliases: []string{"webalias"}, Links: []string{"/db:/web/db", "/cache:/web/c"},
		Ports:   []forward.Mapping{{HostPort: 18240, ContainerPort: 80, Proto: forward.TCP}},
		Command: []string{"/bin/sleep", "60"}, Env: []string{"FOO=bar"}, Created: created, State: registry.Running, AgentPid: 4242}
}

// bridgeRecord is a sandbox on the default bridge with a link.
func bridgeRecord() registry.Record {
	return registry.Record{ID: brID, Name: "br", Hostname: brID[:12], Network: netstore.BridgeName, NetworkID: strings.Repeat("b", 64),
		IP: netip.MustParseAddr("172.17.0.2"), Prefix: 16, Gateway: netip.MustParseAddr("172.17.0.1"), MAC: "02:42:ac:11:00:02", Links: []string{"/db:/br/db"},
		Command: []string{"/bin/sleep", "60"}, Created: created, State: registry.Running, AgentPid: 4243}
}

func TestInspectDecodesAsDocker(t *testing.T) {
	b := inspectJSON(t, []sandboxView{view(webRecord()), view(bridgeRecord())})
	var typed []dockerInspect
	decodeStrict(t, b, &typed)
	var generic []map[string]any
	if err := json.Unmarshal(b, &generic); err != nil || len(generic) != 2 || len(typed) != 2 {
		t.Fatalf("inspect output: %v\n%s", err, b)
	}

	// As a Docker engine shows them (checked against one, API 1.41): the
	// top-level addresses empty off the default bridge, the short id as a
	// user-defined network's last alias, and its --link in the endpoint's
	// Links (HostConfig.Links is null off the default bridge).
	checkFields(t, "inspect web", generic[0], map[string]any{
		"NetworkSettings.IPAddress":                   "",
		"NetworkSettings.MacAddress":                  "",
		"NetworkSettings.Gateway":                     "",
		"NetworkSettings.IPPrefixLen":                 float64(0),
		"NetworkSettings.SecondaryIPAddresses":        nil,
		"NetworkSettings.Networks.appnet.IPAMConfig":  map[string]any{"IPv4Address": "172.29.0.9"},
		"NetworkSettings.Networks.appnet.Aliases":     []any{"webalias", webID[:12]},
		"NetworkSettings.Networks.appnet.Links":       []any{"db", "cache:c"},
		"NetworkSettings.Networks.appnet.EndpointID":  endpointID(netID, webID),
		"NetworkSettings.Networks.appnet.IPAddress":   "172.29.0.9",
		"NetworkSettings.Networks.appnet.IPPrefixLen": float64(16),
		"Config.Env":              []any{"FOO=bar"},
		"Config.Hostname":         webID[:12],
		"HostConfig.Links":        nil,
		"HostConfig.PortBindings": map[string]any{"80/tcp": []any{map[string]any{"HostIp": "", "HostPort": "18240"}}},
	})
	checkFields(t, "inspect br", generic[1], map[string]any{
		"NetworkSettings.IPAddress":                  "172.17.0.2",
		"NetworkSettings.MacAddress":                 "02:42:ac:11:00:02",
		"NetworkSettings.Gateway":                    "172.17.0.1",
		"NetworkSettings.IPPrefixLen":                float64(16),
		"NetworkSettings.SecondaryIPAddresses":       nil,
		"NetworkSettings.Networks.bridge.IPAMConfig": nil,
		"NetworkSettings.Networks.bridge.Aliases":    nil,
		"Config.Env":              []any{},
		"Config.Hostname":         brID[:12],
		"HostConfig.Links":        []any{"/db:/br/db"},
		"HostConfig.PortBindings": map[string]any{},
	})

	// The typed values a Docker client reads.
	web := typed[0]
	ep := web.NetworkSettings.Networks["appnet"]
	if ep == nil || ep.IPAMConfig == nil || ep.IPAMConfig.IPv4Address != netip.MustParseAddr("172.29.0.9") ||
		ep.IPAddress != netip.MustParseAddr("172.29.0.9") || ep.Gateway != netip.MustParseAddr("172.29.0.1") ||
		ep.MacAddress.String() != "02:42:ac:1d:00:09" || ep.NetworkID != netID {
		t.Errorf("web's endpoint as Docker's type: %+v", ep)
	}
	pb := web.HostConfig.PortBindings[network.MustParsePort("80/tcp")]
	if len(pb) != 1 || pb[0].HostPort != "18240" || pb[0].HostIP.IsValid() {
		t.Errorf("web's PortBindings as Docker's type: %+v", web.HostConfig.PortBindings)
	}
	if web.State == nil || !web.State.Running || web.State.Pid != 4242 || web.Created != created.Format(time.RFC3339Nano) {
		t.Errorf("web's State and Created as Docker's type: %+v %s", web.State, web.Created)
	}
	if br := typed[1].NetworkSettings; br.IPAddress != "172.17.0.2" || br.Networks["bridge"].Aliases != nil {
		t.Errorf("br's NetworkSettings as Docker's type: %+v", br)
	}
}

func TestNetworkInspectDecodesAsDocker(t *testing.T) {
	n := netstore.Network{ID: netID, Name: "appnet", Driver: netstore.DriverBridge, Subnet: netip.MustParsePrefix("172.29.0.0/16"),
		Gateway: netip.MustParseAddr("172.29.0.1"), Created: created}
	b := inspectJSON(t, []networkView{inspectNetwork(n, []registry.Record{webRecord(), bridgeRecord()})})
	var typed []network.Inspect
	decodeStrict(t, b, &typed)
	decodeStrict(t, withoutContainers(t, b), &[]network.Summary{})
	var generic []map[string]any
	if err := json.Unmarshal(b, &generic); err != nil || len(generic) != 1 || len(typed) != 1 {
		t.Fatalf("network inspect output: %v\n%s", err, b)
	}
	// As Docker shows a user-defined IPv4 network.
	checkFields(t, "network inspect appnet", generic[0], map[string]any{
		"Scope":        "local",
		"EnableIPv6":   false,
		"IPAM.Driver":  "default",
		"IPAM.Options": map[string]any{},
		"IPAM.Config":  []any{map[string]any{"Subnet": "172.29.0.0/16", "Gateway": "172.29.0.1"}},
		"Attachable":   false,
		"Ingress":      false,
		"ConfigFrom":   map[string]any{"Network": ""},
		"ConfigOnly":   false,
		"Labels":       map[string]any{},
		"Containers": map[string]any{webID: map[string]any{"Name": "web", "EndpointID": endpointID(netID, webID), "MacAddress": "02:42:ac:1d:00:09",
			"IPv4Address": "172.29.0.9/16", "IPv6Address": ""}},
	})
	if s, _ := generic[0]["Created"].(string); !strings.Contains(s, ".123456789Z") {
		t.Errorf("Created %q: want Docker's fractional seconds", s)
	}
	got := typed[0]
	if !got.Created.Equal(created) || len(got.IPAM.Config) != 1 || got.IPAM.Config[0].Subnet != n.Subnet ||
		got.IPAM.Config[0].Gateway != n.Gateway || got.Containers[webID].IPv4Address != netip.MustParsePrefix("172.29.0.9/16") {
		t.Errorf("network as Docker's type: %+v", got)
	}
}

// withoutContainers is b without the members, as network.Summary (the
// list form of network ls) has none.
func withoutContainers(t *testing.T, b []byte) []byte {
	t.Helper()
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(b, &objs); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		delete(o, "Containers")
	}
	nb, err := json.Marshal(objs)
	if err != nil {
		t.Fatalf("re-encoding without Containers: %v", err)
	}
	return nb
}
