package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestPrivateDualStack: --network private is dual stack by default, in
// slirp4netns -6's layout: eth0 has the fd00::/64 address SLAAC would make
// from its MAC before the command starts (no DAD wait: the first connect
// works), the default route via the gateway's link-local address, DNS at
// fd00::3 listed in resolv.conf and answering, the own v6 line in
// /etc/hosts as Docker writes it, the host's ::1 at fd00::2 only with
// --host-loopback, outbound TCP and UDP to an IPv6 world host from the
// host's own IPv6 address, and an immediate refusal for an IPv6 host the
// host cannot route to; --ipv6=false gives IPv4 only.
func TestPrivateDualStack(t *testing.T) {
	requireLauncher(t)
	srv := startCmd(t, cmdOpts{}, probe, "serve-tcp", "[::1]:18640")
	srv.waitReady()
	script := fmt.Sprintf(`P=%[1]s
ip -o -6 addr show dev eth0 scope global
ip -6 route show default
grep fd00 /etc/resolv.conf /etc/hosts
$P tcp -timeout 5s [fd00::2]:18640 v6-loopback
echo
$P tcp -timeout 5s [%[2]s]:7777 v6-out
echo
$P udp -timeout 5s [%[2]s]:7777 v6-udp
$P tcp -timeout 5s [2001:db8:ffff::2]:7777 v6-unroutable 2>&1 | sed 's/^/no v6 route: /'
`, probe, worldIP6)
	r := runNR(t, "--host-loopback", "--", "/bin/sh", "-c", script)
	wantExit(t, r, 0, "a dual-stack private sandbox")
	for _, want := range []string{
		"inet6 fd00::42:aff:fe00:264/64 scope global",
		"default via fe80::42:aff:fe00:202 dev eth0",
		"/etc/resolv.conf:nameserver fd00::3",
		"/etc/hosts:fd00::42:aff:fe00:264\t",
		"from [::1]:", "v6-loopback",
		// The world sees the host's own IPv6 address.
		"from [" + hostIP6 + "]:", "v6-out", "v6-udp",
		"no v6 route: probe: ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	for _, bad := range []string{"tentative", "v6-unroutable"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("unexpected %q in:\n%s", bad, r)
		}
	}
	if !strings.Contains(r.stdout, "connection refused") {
		t.Errorf("an IPv6 host the host cannot reach: want an immediate refusal:\n%s", r)
	}

	// DNS over IPv6: the resolver at fd00::3 alone answers for the world.
	r = runNR(t, "--dns", "fd00::3", "--", probe, "resolve", "-timeout", "5s", "world.e2e.test")
	wantExit(t, r, 0, "a lookup through fd00::3")
	if strings.TrimSpace(r.stdout) != "198.51.100.2" {
		t.Errorf("resolve through fd00::3: %q", r.stdout)
	}

	// Without --host-loopback, fd00::2 refuses as 10.0.2.2 does.
	r = runNR(t, "--", probe, "tcp", "-timeout", "5s", "[fd00::2]:18640", "v6-loopback")
	if r.code == 0 || strings.Contains(r.stdout, "v6-loopback") {
		t.Errorf("the host's ::1 answered without --host-loopback:\n%s", r)
	}

	r = runNR(t, "--ipv6=false", "--", "/bin/sh", "-c", "ip -o -6 addr show dev eth0 scope global; grep -c fd00 /etc/resolv.conf /etc/hosts")
	if strings.Contains(r.stdout, "fd00::42") || !strings.Contains(r.stdout, "/etc/resolv.conf:0") || !strings.Contains(r.stdout, "/etc/hosts:0") {
		t.Errorf("--ipv6=false: want IPv4 only:\n%s", r)
	}
}

// TestPingPastTheGateway: echo requests to hosts outside the segment go
// out through the host's unprivileged ICMP sockets (the launcher allows
// them for every group, as distros do) and their replies come back, over
// IPv4 and IPv6, from a private sandbox and from a member of the shared
// bridge network; the gateway still answers for itself.
func TestPingPastTheGateway(t *testing.T) {
	requireLauncher(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed (.ci/run installs it)")
	}
	u := newUser(t)
	for _, c := range []struct{ network, dst string }{
		{"private", worldIP},
		{"private", worldIP6},
		{"private", "fd00::2"},
		{"bridge", worldIP},
	} {
		r := u.nr("run", "--network", c.network, "--", bb, "ping", "-c", "3", "-W", "2", "-w", "10", c.dst)
		wantExit(t, r, 0, "busybox ping "+c.dst+" on "+c.network)
		if !strings.Contains(r.stdout, "3 packets received") || !strings.Contains(r.stdout, "from "+c.dst) {
			t.Errorf("ping %s on %s: want 3 replies from it:\n%s", c.dst, c.network, r)
		}
	}
	// Where the host cannot route, no reply comes.
	r := u.nr("run", "--network", "private", "--", bb, "ping", "-c", "1", "-W", "1", "2001:db8:ffff::2")
	if r.code == 0 {
		t.Errorf("a ping to an address the host cannot reach was answered:\n%s", r)
	}
}
