package runner

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/wire"
)

// Docker's legacy links: on the default bridge, --link NAME:ALIAS also
// gives the command variables describing the linked sandbox (its address
// and ports, and its -e variables), named after ALIAS.

// linkEnv are the variables of every --link of a sandbox named self, from
// the linked sandboxes' records.
func linkEnv(reg *registry.Registry, links []wire.LinkedName, self string) []string {
	var env []string
	for _, l := range links {
		rec, err := reg.Get(l.Name)
		if err != nil || !rec.IP.IsValid() {
			continue // the daemon refused the join already if it was not there
		}
		alias := l.Alias
		if alias == "" {
			alias = l.Name
		}
		env = append(env, linkVars(alias, self, rec.IP, rec.Ports, rec.Env)...)
	}
	return env
}

// linkVars are one link's variables, in Docker's order: the default port
// (the lowest, TCP first), each port's four, the name, then the linked
// sandbox's variables but HOME and PATH.
func linkVars(alias, self string, ip netip.Addr, mappings []forward.Mapping, linkedEnv []string) []string {
	prefix := strings.ToUpper(strings.ReplaceAll(alias, "-", "_"))
	type port struct {
		n     uint16
		proto forward.Proto
	}
	var ports []port
	for _, m := range mappings {
		p := port{m.ContainerPort, m.Proto}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	slices.SortFunc(ports, func(a, b port) int {
		return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.proto, b.proto)) // "tcp" < "udp"
	})
	var env []string
	if len(ports) > 0 {
		env = append(env, fmt.Sprintf("%s_PORT=%s://%s:%d", prefix, ports[0].proto, ip, ports[0].n))
	}
	for _, p := range ports {
		key := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.n, strings.ToUpper(string(p.proto)))
		env = append(env,
			fmt.Sprintf("%s=%s://%s:%d", key, p.proto, ip, p.n),
			fmt.Sprintf("%s_ADDR=%s", key, ip),
			fmt.Sprintf("%s_PORT=%d", key, p.n),
			fmt.Sprintf("%s_PROTO=%s", key, p.proto))
	}
	env = append(env, fmt.Sprintf("%s_NAME=/%s/%s", prefix, self, alias))
	for _, kv := range linkedEnv {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "HOME" || k == "PATH" {
			continue
		}
		env = append(env, fmt.Sprintf("%s_ENV_%s=%s", prefix, k, v))
	}
	return env
}
