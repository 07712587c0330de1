package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestSegmentDualStack: a network made with network create --ipv6 gives
// each member an IPv6 address of its subnet from IPAM beside its IPv4 one
// (--ip6 picks one), set before the command starts and never tentative,
// with the gateway's link-local address as the default route; member
// names resolve to both (AAAA), members reach each other over IPv6 (TCP
// and ping), the own v6 line is in /etc/hosts, outbound IPv6 leaves from
// the host's address, and an IPv6 client of a published port reaches the
// member over IPv6 with its own address kept (over IPv4 when the member
// serves on IPv4 only). inspect and network connect --ip6 show and set
// the addresses.
func TestSegmentDualStack(t *testing.T) {
	requireLauncher(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed (.ci/run installs it)")
	}
	u := newUser(t)
	const sub6 = "fd00:5e6:1::/64"
	u.ok("network", "create", "--ipv6", "--subnet", "172.29.0.0/16", "--subnet", sub6, "dual")
	t.Cleanup(func() { u.nr("network", "rm", "dual") })
	u.ok("run", "-d", "--name", "v6srv", "--network", "dual", "-p", "18661:7000", "--", probe, "serve-tcp", "[::]:7000")
	u.ok("run", "-d", "--name", "v4only", "--network", "dual", "-p", "18662:7001", "--", probe, "serve-tcp", "0.0.0.0:7001")
	u.ok("run", "-d", "--name", "v6fixed", "--network", "dual", "--ip6", "fd00:5e6:1::99", "--", probe, "sleep", "60s")

	script := fmt.Sprintf(`P=%[1]s
ip -o -6 addr show dev eth0 scope global
ip -6 route show default
grep v6client /etc/hosts
$P resolve v6srv
$P resolve v6fixed
$P tcp -timeout 5s [fd00:5e6:1::2]:7000 member-to-member
echo
$P tcp -timeout 5s [%[2]s]:7777 v6-out
echo
%[3]s ping -c 2 -W 2 -w 10 fd00:5e6:1::2
`, probe, worldIP6, busybox)
	r := u.nr("run", "--network", "dual", "--name", "v6client", "--hostname", "v6client", "--", "/bin/sh", "-c", script)
	wantExit(t, r, 0, "a member of a dual-stack network")
	for _, want := range []string{
		"inet6 fd00:5e6:1::4/64 scope global",
		"default via fe80::42:acff:fe1d:1 dev eth0",
		"fd00:5e6:1::4\tv6client\n",
		"172.29.0.2\nfd00:5e6:1::2\n",
		"172.29.0.4\nfd00:5e6:1::99\n",
		"from [fd00:5e6:1::4]:", "member-to-member",
		"from [" + hostIP6 + "]:", "v6-out",
		"2 packets received", // member to member over IPv6, frame to frame
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "tentative") {
		t.Errorf("an address still in duplicate address detection:\n%s", r)
	}

	// A world IPv6 client of the published port is seen with its address.
	resp := worldDial(t, "tcp", "["+hostIP6+"]:18661", "from-world-v6", 5*time.Second)
	if resp.Error != "" || !strings.Contains(resp.Reply, "from ["+worldIP6+"]:") {
		t.Errorf("a world IPv6 client of -p 18661:7000: %+v; want the member to see [%s]", resp, worldIP6)
	}
	// A server listening on IPv4 only is reached over IPv4 all the same.
	resp = worldDial(t, "tcp", "["+hostIP6+"]:18662", "v6-to-v4only", 5*time.Second)
	if resp.Error != "" || !strings.Contains(resp.Reply, "v6-to-v4only") {
		t.Errorf("a world IPv6 client of a member serving on 0.0.0.0 only: %+v; want it served over IPv4", resp)
	}
	// An IPv4 client still reaches it over IPv4.
	resp = worldDial(t, "tcp", hostIP+":18661", "from-world-v4", 5*time.Second)
	if resp.Error != "" || !strings.Contains(resp.Reply, "from "+worldIP+":") {
		t.Errorf("a world IPv4 client of -p 18661:7000: %+v; want the member to see %s", resp, worldIP)
	}

	st := u.inspect("v6fixed")["NetworkSettings"].(map[string]any)
	nets := st["Networks"].(map[string]any)["dual"].(map[string]any)
	if nets["GlobalIPv6Address"] != "fd00:5e6:1::99" || nets["GlobalIPv6PrefixLen"] != float64(64) || nets["IPv6Gateway"] != "fd00:5e6:1::1" {
		t.Errorf("inspect v6fixed, Networks.dual: %v; want fd00:5e6:1::99/64 via fd00:5e6:1::1", nets)
	}
	// network connect --ip6 gives the next ethN that address.
	u.ok("run", "-d", "--name", "onbridge", "--network", "bridge", "--", probe, "sleep", "60s")
	u.ok("network", "connect", "--ip6", "fd00:5e6:1::77", "dual", "onbridge")
	if r := u.ok("exec", "onbridge", "ip", "-o", "-6", "addr", "show", "dev", "eth1", "scope", "global"); !strings.Contains(r.stdout, "inet6 fd00:5e6:1::77/64 scope global") {
		t.Errorf("network connect --ip6: eth1 has %q", r.stdout)
	}
	if r := u.nr("network", "connect", "--ip6", "fd00:5e6:1::78", "bridge", "v4only"); r.code != 125 || !strings.Contains(r.stderr, "has no IPv6") {
		t.Errorf("network connect --ip6 to the IPv4-only bridge: %s", r)
	}
	if r := u.nr("run", "--network", "bridge", "--ip6", "fd00:5e6:1::7", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "has no IPv6") {
		t.Errorf("--ip6 on the IPv4-only bridge: %s; want a refusal saying it has no IPv6", r)
	}
}

// TestBridgeIPv6Setting: the default bridge is IPv4 only until the
// daemon settings turn IPv6 on, as Docker's daemon.json does: with
// "ipv6": true and "fixed-cidr-v6", a bridge member gets an address of
// that subnet and network inspect shows it; a key the daemon does not
// know keeps the daemon from starting, with a word on why in its log.
func TestBridgeIPv6Setting(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	home := strings.TrimPrefix(u.env[0], "HOME=")
	if r := u.ok("run", "--network", "bridge", "--", "/bin/sh", "-c", "ip -o -6 addr show dev eth0 scope global"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("the default bridge without settings has IPv6: %q", r.stdout)
	}
	u.cleanup() // the daemon exits after its last member; the next run starts one that reads the settings
	dir := filepath.Join(home, ".config", "netns-run")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(`{"ipv6": true, "fixed-cidr-v6": "fd00:17::/64"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := u.ok("run", "--network", "bridge", "--", "/bin/sh", "-c", "ip -o -6 addr show dev eth0 scope global")
	if !strings.Contains(r.stdout, "inet6 fd00:17::2/64 scope global") {
		t.Errorf("a bridge member with ipv6 on: %q; want fd00:17::2/64", r.stdout)
	}
	if out := u.ok("network", "inspect", "-f", "{{.EnableIPv6}} {{json .IPAM.Config}}", "bridge").stdout; !strings.Contains(out, "true") || !strings.Contains(out, "fd00:17::/64") {
		t.Errorf("network inspect bridge with ipv6 on: %q", out)
	}
	u.cleanup() // the daemon exits after its last member; the next run starts one that reads the settings
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(`{"ipv6": true, "bip": "10.9.0.1/24"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := u.nr("run", "--network", "bridge", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "daemon.log") {
		t.Errorf("run with a daemon.json the daemon refuses: %s; want status 125 pointing at daemon.log", r)
	}
	if b, _ := os.ReadFile(filepath.Join(u.rt, "netns-run", "daemon.log")); !strings.Contains(string(b), `unknown field "bip"`) {
		t.Errorf("daemon.log does not name the unknown key:\n%s", b)
	}
}
