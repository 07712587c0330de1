package e2e

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestInspectAsDocker: inspect and network inspect carry the fields
// scripts read, in the shape a Docker engine gives them (checked against
// one): the top-level addresses only on the default bridge, IPAMConfig
// for a static --ip, the short id last among a user-defined network's
// aliases and no aliases on the bridge, --link in a user-defined network's
// endpoint, Config.Env and Hostname, HostConfig.PortBindings, Docker's
// timestamps; and the
// network's Scope, EnableIPv6, IPAM driver and options, Attachable,
// Ingress, ConfigFrom, ConfigOnly and Labels.
func TestInspectAsDocker(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", "172.29.0.0/16", "inspnet")
	u.ok("run", "-d", "--name", "insp-db", "--network", "inspnet", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "insp-web", "--network", "inspnet", "--ip", "172.29.0.9", "--network-alias", "webalias",
		"--link", "insp-db:db", "-e", "FOO=bar", "-p", "18240:80", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "insp-br", "--network", "bridge", "--", probe, "sleep", "60s")
	t.Cleanup(func() { u.nr("stop", "-t", "1", "insp-web", "insp-db", "insp-br") })

	var c []map[string]any
	if err := json.Unmarshal([]byte(u.ok("inspect", "insp-web", "insp-br").stdout), &c); err != nil || len(c) != 2 {
		t.Fatalf("inspect: %v", err)
	}
	web, br := c[0], c[1]
	get := func(m map[string]any, path string) any {
		var v any = m
		for _, k := range strings.Split(path, ".") {
			mm, ok := v.(map[string]any)
			if !ok {
				return fmt.Sprintf("<no %s>", path)
			}
			if v, ok = mm[k]; !ok {
				return fmt.Sprintf("<no %s>", path)
			}
		}
		return v
	}
	id := get(web, "Id").(string)
	for path, want := range map[string]any{
		"NetworkSettings.IPAddress":                    "",
		"NetworkSettings.SecondaryIPAddresses":         nil,
		"NetworkSettings.Networks.inspnet.IPAddress":   "172.29.0.9",
		"NetworkSettings.Networks.inspnet.IPPrefixLen": float64(16),
		"NetworkSettings.Networks.inspnet.Gateway":     "172.29.0.1",
		"NetworkSettings.Networks.inspnet.MacAddress":  "02:42:ac:1d:00:09",
		"NetworkSettings.Networks.inspnet.IPAMConfig":  map[string]any{"IPv4Address": "172.29.0.9"},
		"NetworkSettings.Networks.inspnet.Aliases":     []any{"webalias", id[:12]},
		"NetworkSettings.Networks.inspnet.Links":       []any{"insp-db:db"},
		"Config.Env":                                   []any{"FOO=bar"},
		"Config.Hostname":                              id[:12],
		"HostConfig.Links":                             nil,
		"HostConfig.PortBindings":                      map[string]any{"80/tcp": []any{map[string]any{"HostIp": "", "HostPort": "18240"}}},
		"HostConfig.NetworkMode":                       "inspnet",
	} {
		if got := get(web, path); !reflect.DeepEqual(got, want) {
			t.Errorf("inspect insp-web: %s = %#v; want %#v", path, got, want)
		}
	}
	for path, want := range map[string]any{
		"NetworkSettings.IPAddress":                  get(br, "NetworkSettings.Networks.bridge.IPAddress"),
		"NetworkSettings.Gateway":                    "172.17.0.1",
		"NetworkSettings.IPPrefixLen":                float64(16),
		"NetworkSettings.MacAddress":                 get(br, "NetworkSettings.Networks.bridge.MacAddress"),
		"NetworkSettings.Networks.bridge.Aliases":    nil,
		"NetworkSettings.Networks.bridge.IPAMConfig": nil,
		"HostConfig.Links":                           nil,
	} {
		if got := get(br, path); !reflect.DeepEqual(got, want) {
			t.Errorf("inspect insp-br: %s = %#v; want %#v", path, got, want)
		}
	}
	for _, ts := range []string{"Created", "State.StartedAt"} {
		s, _ := get(web, ts).(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.Contains(s, ".") {
			t.Errorf("inspect %s = %q: want RFC 3339 with fractional seconds", ts, s)
		}
	}

	var n []map[string]any
	if err := json.Unmarshal([]byte(u.ok("network", "inspect", "inspnet").stdout), &n); err != nil || len(n) != 1 {
		t.Fatalf("network inspect: %v", err)
	}
	for path, want := range map[string]any{
		"Scope": "local", "EnableIPv6": false, "IPAM.Driver": "default", "IPAM.Options": map[string]any{},
		"Attachable": false, "Ingress": false, "ConfigFrom": map[string]any{"Network": ""}, "ConfigOnly": false,
		"Labels": map[string]any{}, "Internal": false, "Driver": "bridge",
	} {
		if got := get(n[0], path); !reflect.DeepEqual(got, want) {
			t.Errorf("network inspect: %s = %#v; want %#v", path, got, want)
		}
	}
	if s, _ := get(n[0], "Created").(string); !strings.Contains(s, ".") {
		t.Errorf("network inspect Created %q: want fractional seconds", s)
	}

	// --format as in Docker's documentation: fields by their JSON names.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "-f", "{{.NetworkSettings.Networks.inspnet.IPAddress}}", "insp-web"}, "172.29.0.9\n"},
		{[]string{"inspect", "--format", "{{.Id}}", "insp-web"}, id + "\n"},
		{[]string{"inspect", "-f", "{{json .Config.Env}}", "insp-web"}, `["FOO=bar"]` + "\n"},
		{[]string{"inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "insp-br"}, get(br, "NetworkSettings.IPAddress").(string) + "\n"},
		{[]string{"inspect", "-f", "{{.Name}} {{.HostConfig.NetworkMode}}", "insp-web", "insp-br"}, "/insp-web inspnet\n/insp-br bridge\n"},
		{[]string{"network", "inspect", "-f", "{{.Name}} {{.Driver}} {{.IPAM.Driver}}", "inspnet"}, "inspnet bridge default\n"},
		{[]string{"network", "ls", "--filter", "name=inspn", "--format", "{{.Name}}/{{.Driver}}/{{.Scope}}"}, "inspnet/bridge/local\n"},
		{[]string{"network", "ls", "--filter", "driver=null", "--format", "table {{.Name}}"}, "NAME\nnone\n"},
	} {
		if r := u.ok(c.args...); r.stdout != c.want {
			t.Errorf("%v: %q; want %q", c.args, r.stdout, c.want)
		}
	}
}
