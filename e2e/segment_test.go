package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// user is an isolated netns-run user: its own data dir (networks) and
// runtime dir (sandboxes, the network daemon), so that tests on shared
// networks do not see each other.
type user struct {
	t   *testing.T
	env []string
	rt  string
}

func newUser(t *testing.T) *user {
	t.Helper()
	home := t.TempDir()
	rt := filepath.Join(t.TempDir(), "xdg")
	if err := os.Mkdir(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	u := &user{t: t, env: []string{"HOME=" + home, "XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_RUNTIME_DIR=" + rt}, rt: rt}
	t.Cleanup(u.cleanup)
	return u
}

// nr runs netns-run as this user.
func (u *user) nr(args ...string) result {
	u.t.Helper()
	return runNRWith(u.t, cmdOpts{env: u.env}, args...)
}

// ok runs netns-run and requires exit status 0.
func (u *user) ok(args ...string) result {
	u.t.Helper()
	r := u.nr(args...)
	wantExit(u.t, r, 0, "netns-run "+shellQuote(args))
	return r
}

// cleanup stops what the test left running and waits for the network
// daemon to go idle and exit, so no process outlives the test.
func (u *user) cleanup() {
	r := runNRWith(u.t, cmdOpts{env: u.env}, "ps", "-q")
	for _, id := range nonEmptyLines(r.stdout) {
		runNRWith(u.t, cmdOpts{env: u.env}, "stop", "-t", "1", id)
	}
	sock := filepath.Join(u.rt, "netns-run", "members.sock")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); os.IsNotExist(err) {
			return
		}
	}
	u.t.Errorf("the network daemon did not exit after its last member")
}

// inspect returns `netns-run inspect NAME` decoded.
func (u *user) inspect(name string) map[string]any {
	u.t.Helper()
	r := u.ok("inspect", name)
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out) != 1 {
		u.t.Fatalf("inspect %s: %v\n%s", name, err, r)
	}
	return out[0]
}

// endpoint is NetworkSettings.Networks[network] of an inspected sandbox.
func endpoint(t *testing.T, v map[string]any, network string) map[string]any {
	t.Helper()
	nets, _ := v["NetworkSettings"].(map[string]any)["Networks"].(map[string]any)
	ep, ok := nets[network].(map[string]any)
	if !ok {
		t.Fatalf("no network %s in %v", network, v["NetworkSettings"])
	}
	return ep
}

// waitTCP retries until addr answers with something.
func waitTCP(t *testing.T, addr string) string {
	t.Helper()
	var got string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = tryTCP(addr, "x"); got != "" {
			return got
		}
	}
	t.Fatalf("nothing answered on %s", addr)
	return ""
}

// TestWalkthroughMacvlan is part 1 of the walk-through: a macvlan-style
// network, two members with .2/.3 and MACs 02:42 + address, ping between
// them, the address freed on stop.
func TestWalkthroughMacvlan(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	r := u.ok("network", "create", "-d", "macvlan", "--subnet", "192.168.57.0/24", "--gateway", "192.168.57.1",
		"--ip-range", "192.168.57.0/24", "macvlan1")
	if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(r.stdout) {
		t.Errorf("network create should print the 64-hex id: %q", r.stdout)
	}
	ls := u.ok("network", "ls").stdout
	for _, re := range []string{`(?m)^NETWORK ID +NAME +DRIVER +SCOPE$`, `(?m)^[0-9a-f]{12} +bridge +bridge +local$`, `(?m)^[0-9a-f]{12} +macvlan1 +macvlan +local$`} {
		if !regexp.MustCompile(re).MatchString(ls) {
			t.Errorf("network ls does not match %s:\n%s", re, ls)
		}
	}
	u.ok("run", "-d", "--name", "mac-nasa", "--network", "macvlan1", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "mac-nasa2", "--network", "macvlan1", "--", probe, "sleep", "60s")
	for name, want := range map[string][2]string{"mac-nasa": {"192.168.57.2", "02:42:c0:a8:39:02"}, "mac-nasa2": {"192.168.57.3", "02:42:c0:a8:39:03"}} {
		ep := endpoint(t, u.inspect(name), "macvlan1")
		if ep["IPAddress"] != want[0] || ep["MacAddress"] != want[1] || ep["Gateway"] != "192.168.57.1" {
			t.Errorf("%s: IPAddress %v MacAddress %v Gateway %v; want %s %s 192.168.57.1", name, ep["IPAddress"], ep["MacAddress"], ep["Gateway"], want[0], want[1])
		}
	}
	ps := u.ok("ps", "--format", "table {{.ID}}\t{{.Names}}\t{{.Networks}}\t{{.IPAddresses}}\t{{.Status}}").stdout
	if !regexp.MustCompile(`(?m)^[0-9a-f]{12} +mac-nasa +macvlan1 +192\.168\.57\.2 +Up `).MatchString(ps) {
		t.Errorf("ps does not show mac-nasa on 192.168.57.2:\n%s", ps)
	}
	// The walk-through's docker exec: mac-nasa's own view, and 5/5 pings
	// to mac-nasa2 straight across the segment.
	r = u.ok("exec", "mac-nasa", "--", "/bin/sh", "-c", probe+" ifinfo; busybox ping -c5 -W2 192.168.57.3")
	if !strings.Contains(r.stdout, "192.168.57.2/24") || !strings.Contains(r.stdout, "02:42:c0:a8:39:02") {
		t.Errorf("exec mac-nasa -- ifinfo:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "5 packets transmitted, 5 packets received, 0% packet loss") {
		t.Errorf("exec mac-nasa -- ping 192.168.57.3:\n%s", r)
	}
	r = u.nr("exec", "mac-nasa", "--", "/bin/sh", "-c", "exit 3")
	wantExit(t, r, 3, "exec passes the exit status through")
	r = runNRWith(t, cmdOpts{env: u.env, stdin: strings.NewReader("via-stdin\n")}, "exec", "-i", "mac-nasa", "--", "/bin/cat")
	if r.stdout != "via-stdin\n" {
		t.Errorf("exec -i should pass stdin: %q", r.stdout)
	}
	wantOwnError(t, u.nr("exec", "nobody", "--", "true"), "exec into a missing sandbox", "nobody")
	// A third member sees itself as the walk-through's `ip a` shows, and
	// pings the second member directly, 5/5.
	r = u.ok("run", "--network", "macvlan1", "--", "/bin/sh", "-c", probe+" ifinfo; busybox ping -c5 -W2 192.168.57.3")
	if !strings.Contains(r.stdout, "192.168.57.4/24") || !strings.Contains(r.stdout, "02:42:c0:a8:39:04") {
		t.Errorf("the third member's eth0:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "5 packets transmitted, 5 packets received, 0% packet loss") {
		t.Errorf("ping between members:\n%s", r)
	}
	// Stop frees the address: the next member gets .2 again.
	u.ok("stop", "-t", "1", "mac-nasa")
	r = u.ok("run", "--network", "macvlan1", "--", probe, "ifinfo")
	if !strings.Contains(r.stdout, "192.168.57.2/24") {
		t.Errorf("after mac-nasa stopped, a new member should get 192.168.57.2:\n%s", r.stdout)
	}
	insp := u.ok("network", "inspect", "macvlan1").stdout
	if !strings.Contains(insp, `"Name": "mac-nasa2"`) || !strings.Contains(insp, `"IPv4Address": "192.168.57.3/24"`) || strings.Contains(insp, `"Name": "mac-nasa"`) {
		t.Errorf("network inspect members:\n%s", insp)
	}
}

// TestWalkthroughLinks is part 2: --link NAME[:ALIAS] on the default
// network writes Docker's hosts lines, and the name reaches the server.
func TestWalkthroughLinks(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("run", "-d", "--name", "web-nasa", "--network", "bridge", "--", probe, "serve-tcp", "80")
	web := u.inspect("web-nasa")
	webID := web["Id"].(string)[:12]
	r := u.ok("run", "--network", "bridge", "--hostname", "link-nasa", "--link", "web-nasa", "--", "/bin/sh", "-c",
		"cat /etc/hosts; for i in 1 2 3 4 5 6 7 8 9 10; do "+probe+" tcp web-nasa:80 It-works && break; sleep 0.3; done")
	wantHosts := "172.17.0.2\tweb-nasa " + webID + "\n172.17.0.3\tlink-nasa\n"
	if !strings.Contains(r.stdout, "ff02::2\tip6-allrouters\n"+wantHosts) {
		t.Errorf("/etc/hosts with --link web-nasa should end with\n%s\ngot:\n%s", wantHosts, r.stdout)
	}
	if !regexp.MustCompile(`from 172\.17\.0\.3:\d+\nIt-works`).MatchString(r.stdout) {
		t.Errorf("curl web-nasa through the link failed:\n%s", r)
	}
	r = u.ok("run", "--network", "bridge", "--link", "web-nasa:nasa1515", "--", "/bin/sh", "-c", "cat /etc/hosts; "+probe+" tcp nasa1515:80 x")
	if !strings.Contains(r.stdout, "172.17.0.2\tnasa1515 "+webID+" web-nasa\n") {
		t.Errorf("/etc/hosts with --link web-nasa:nasa1515:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "\nx") {
		t.Errorf("the alias does not reach the server:\n%s", r)
	}
	r = u.nr("run", "--network", "bridge", "--link", "nobody", "--", probe, "exit", "0")
	wantOwnError(t, r, "--link to a missing sandbox", "nobody")
}

// TestNetworkDNS: on a user-defined network the segment's DNS answers
// member names and aliases with the current address, and forwards the rest.
func TestNetworkDNS(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", "172.28.0.0/16", "appnet")
	u.ok("run", "-d", "--name", "db", "--network", "appnet", "--network-alias", "database", "--", probe, "sleep", "60s")
	r := u.ok("run", "--network", "appnet", "--", "/bin/sh", "-c", probe+" resolve db; "+probe+" resolve database; "+probe+" resolve "+worldName)
	if r.stdout != "172.28.0.2\n172.28.0.2\n"+worldIP+"\n" {
		t.Errorf("resolving db, database and %s on appnet: %q", worldName, r.stdout)
	}
	// db comes back with a new address and is found under its name at once.
	u.ok("stop", "-t", "1", "db")
	u.ok("rm", "db")
	u.ok("run", "-d", "--name", "squatter", "--network", "appnet", "--", probe, "sleep", "60s")
	u.ok("run", "-d", "--name", "db", "--network", "appnet", "--", probe, "sleep", "60s")
	r = u.ok("run", "--network", "appnet", "--", probe, "resolve", "db")
	if r.stdout != "172.28.0.3\n" {
		t.Errorf("after its restart db should resolve to its new address 172.28.0.3: %q", r.stdout)
	}
	// resolv.conf as Docker's embedded DNS writes it on a user-defined
	// network (ndots:0 after the user's options), and without it on the
	// default bridge.
	if r := u.ok("run", "--network", "appnet", "--dns-option", "timeout:2", "--", probe, "cat", "/etc/resolv.conf"); r.stdout != "nameserver 172.28.0.1\noptions timeout:2 ndots:0\n" {
		t.Errorf("resolv.conf on appnet: %q", r.stdout)
	}
	if r := u.ok("run", "--network", "bridge", "--", probe, "cat", "/etc/resolv.conf"); r.stdout != "nameserver 172.17.0.1\n" {
		t.Errorf("resolv.conf on the default bridge: %q", r.stdout)
	}
	// --dns on a user-defined network is the upstream of the embedded
	// DNS for that member only; resolv.conf keeps the gateway. On the
	// default bridge it is written into resolv.conf.
	both := probe + " resolve db; " + probe + " resolve " + altDNSName + "; cat /etc/resolv.conf"
	if r := u.ok("run", "--network", "appnet", "--dns", altDNSIP, "--", "/bin/sh", "-c", both); r.stdout != "172.28.0.3\n"+altDNSAddr+"\nnameserver 172.28.0.1\noptions ndots:0\n" {
		t.Errorf("run --dns %s on appnet: member names, %s through it, and resolv.conf: %q", altDNSIP, altDNSName, r.stdout)
	}
	u.ok("run", "-d", "--name", "withdns", "--network", "appnet", "--dns", altDNSIP, "--", probe, "sleep", "60s")
	if r := u.nr("run", "--network", "appnet", "--", probe, "resolve", altDNSName); r.code == 0 {
		t.Errorf("without --dns, %s resolved on appnet (%q): another member's --dns leaked", altDNSName, r.stdout)
	}
	if r := u.ok("exec", "withdns", probe, "resolve", altDNSName); r.stdout != altDNSAddr+"\n" {
		t.Errorf("exec in a member run with --dns: %s resolved to %q", altDNSName, r.stdout)
	}
	if r := u.ok("run", "--network", "bridge", "--dns", altDNSIP, "--", probe, "cat", "/etc/resolv.conf"); r.stdout != "nameserver "+altDNSIP+"\n" {
		t.Errorf("resolv.conf on the default bridge with --dns: %q", r.stdout)
	}
}

// TestSegmentPublish is part 3: a published port of a bridge member, the
// PORTS column, loopback and world clients, ports changed at run time and
// freed on stop; on each path of loopback clients (fastpath_test.go): the
// fast path, where they appear as the member's own 127.0.0.1, and the
// gVisor path, where they appear as the gateway.
func TestSegmentPublish(t *testing.T) {
	requireLauncher(t)
	for i, mode := range fastPathModes {
		t.Run(mode.name, func(t *testing.T) { segmentPublish(t, mode, 18160+2*i) })
	}
}

func segmentPublish(t *testing.T, mode fastPathMode, port int) {
	from := mode.from(bridgeNet)
	fromLo := regexp.MustCompile(`^from ` + regexp.QuoteMeta(from) + `:\d+\nx$`)
	u := newUser(t)
	u.env = append(u.env, mode.env...)
	p, added := fmt.Sprint(port), fmt.Sprint(port+1)
	u.ok("run", "-d", "--name", "pf-nasa-web", "--network", "bridge", "-p", p+":80", "--", probe, "serve-tcp", "80")
	if got := waitTCP(t, "127.0.0.1:"+p); !fromLo.MatchString(got) {
		t.Errorf("loopback client through %s: %q; want it seen as %s", p, got, from)
	}
	resp := worldDial(t, "tcp", hostIP+":"+p, "hello", 10*time.Second)
	if resp.Error != "" || !regexp.MustCompile(`^from 198\.51\.100\.2:\d+\nhello$`).MatchString(resp.Reply) {
		t.Errorf("world client: %q %q; want its own address", resp.Reply, resp.Error)
	}
	ps := u.ok("ps").stdout
	if !strings.Contains(ps, "0.0.0.0:"+p+"->80/tcp, [::]:"+p+"->80/tcp") {
		t.Errorf("ps PORTS column:\n%s", ps)
	}
	// One truth for ps, port and inspect, as Docker's: both addresses.
	if r := u.ok("port", "pf-nasa-web"); r.stdout != "80/tcp -> 0.0.0.0:"+p+"\n80/tcp -> [::]:"+p+"\n" {
		t.Errorf("port lists:\n%s", r.stdout)
	}
	// docker port NAME PRIVATE_PORT: the host addresses of one port.
	if r := u.ok("port", "pf-nasa-web", "80/tcp"); r.stdout != "0.0.0.0:"+p+"\n[::]:"+p+"\n" {
		t.Errorf("port pf-nasa-web 80/tcp: %q", r.stdout)
	}
	if r := u.nr("port", "pf-nasa-web", "81"); r.code != 125 || !strings.Contains(r.stderr, "no public port '81/tcp' published for pf-nasa-web") {
		t.Errorf("port pf-nasa-web 81: %s", r)
	}
	var inspected []struct {
		NetworkSettings struct {
			Ports map[string][]struct{ HostIp, HostPort string }
		}
	}
	r := u.ok("inspect", "pf-nasa-web")
	if err := json.Unmarshal([]byte(r.stdout), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("inspect: %v\n%s", err, r.stdout)
	}
	if got, want := fmt.Sprint(inspected[0].NetworkSettings.Ports), fmt.Sprintf("map[80/tcp:[{0.0.0.0 %s} {:: %s}]]", p, p); got != want {
		t.Errorf("inspect's NetworkSettings.Ports: %s; want %s", got, want)
	}
	u.ok("port", "add", "pf-nasa-web", added+":80")
	if got := waitTCP(t, "127.0.0.1:"+added); !fromLo.MatchString(got) {
		t.Errorf("loopback client through the port added at run time: %q; want it seen as %s", got, from)
	}
	resp = worldDial(t, "tcp", hostIP+":"+added, "hello", 10*time.Second)
	if resp.Error != "" || !regexp.MustCompile(`^from 198\.51\.100\.2:\d+\nhello$`).MatchString(resp.Reply) {
		t.Errorf("world client through the port added at run time: %q %q; want its own address", resp.Reply, resp.Error)
	}
	if r := u.ok("port", "pf-nasa-web"); !strings.Contains(r.stdout, "80/tcp -> 0.0.0.0:"+added) {
		t.Errorf("port lists:\n%s", r.stdout)
	}
	u.ok("port", "rm", "pf-nasa-web", added+":80")
	if got := tryTCP("127.0.0.1:"+added, "x"); got != "" {
		t.Errorf("port removed at run time still answers: %q", got)
	}
	r = u.nr("run", "--network", "bridge", "-p", p+":80", "--", probe, "exit", "0")
	wantOwnError(t, r, "a host port another member holds", "already in use")
	u.ok("stop", "-t", "1", "pf-nasa-web")
	if got := tryTCP("127.0.0.1:"+p, "x"); got != "" {
		t.Errorf("the port still answers after stop: %q", got)
	}
}

// TestPortChangeNeedsSharedNetwork: port add/rm say in one line why the
// ports of a sandbox off a shared network cannot change at run time.
func TestPortChangeNeedsSharedNetwork(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("run", "-d", "--name", "lonely", "--", probe, "sleep", "60s")
	wantOwnError(t, u.nr("port", "add", "lonely", "18175:80"), "port add on a private network", "lonely is on a private network")
	u.ok("run", "-d", "--name", "alone", "--network", "none", "--", probe, "sleep", "60s")
	wantOwnError(t, u.nr("port", "rm", "alone", "18175:80"), "port rm on --network none", "alone is not on a shared network (it runs on none)")
	u.ok("stop", "-t", "1", "lonely", "alone")
}

// TestSegmentErrors: every bad network request is one line, status 125,
// and changes nothing.
func TestSegmentErrors(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", "10.20.0.0/16", "net1")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "--subnet", "10.20.5.0/24", "net2"}, "overlap"},
		{[]string{"network", "create", "--subnet", "10.30.0.0/16", "net1"}, "already exists"},
		{[]string{"network", "create", "--subnet", "10.40.0.0/16", "--gateway", "10.41.0.1", "net3"}, "10.41.0.1"},
		{[]string{"network", "create", "--subnet", "10.40.0.0/16", "--ip-range", "10.50.0.0/24", "net3"}, "10.50.0.0/24"},
		{[]string{"network", "create", "-d", "overlay", "net3"}, "overlay"},
		{[]string{"run", "--network", "nosuchnet", "--", probe, "exit", "0"}, "nosuchnet"},
		{[]string{"network", "rm", "bridge"}, "bridge"},
	}
	for _, c := range cases {
		r := u.nr(c.args...)
		wantOwnError(t, r, "netns-run "+shellQuote(c.args), c.want)
	}
	if ls := u.ok("network", "ls").stdout; strings.Contains(ls, "net2") || strings.Contains(ls, "net3") {
		t.Errorf("a failed create left a network:\n%s", ls)
	}
	u.ok("run", "-d", "--name", "holder", "--network", "net1", "--ip", "10.20.0.9", "--", probe, "sleep", "60s")
	wantOwnError(t, u.nr("network", "rm", "net1"), "removing a network in use", "in use")
	wantOwnError(t, u.nr("run", "--network", "net1", "--ip", "10.20.0.9", "--", probe, "exit", "0"), "an address in use", "in use")
	wantOwnError(t, u.nr("run", "--network", "net1", "--name", "holder", "--", probe, "exit", "0"), "a name in use", "holder")
	u.ok("network", "create", "--subnet", "10.60.0.0/30", "tiny")
	u.ok("run", "-d", "--network", "tiny", "--", probe, "sleep", "60s")
	wantOwnError(t, u.nr("run", "--network", "tiny", "--", probe, "exit", "0"), "an exhausted range", "no free address")
}

// TestSegmentIsolationAndSpoofing: macvlan_mode=private keeps members
// apart; a member cannot send as another address or MAC.
func TestSegmentIsolationAndSpoofing(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "-d", "macvlan", "--subnet", "10.70.0.0/24", "-o", "macvlan_mode=private", "priv")
	u.ok("run", "-d", "--name", "a", "--network", "priv", "--", probe, "serve-tcp", "80")
	r := u.nr("run", "--network", "priv", "--", "/bin/sh", "-c", "busybox ping -c2 -W1 10.70.0.2; busybox ping -c1 -W2 10.70.0.1")
	if !strings.Contains(r.stdout, "2 packets transmitted, 0 packets received") || !strings.Contains(r.stdout, "1 packets transmitted, 1 packets received") {
		t.Errorf("private mode: a member must reach the gateway but not another member:\n%s", r)
	}

	u.ok("network", "create", "--subnet", "10.80.0.0/24", "open")
	u.ok("run", "-d", "--name", "b", "--network", "open", "--", probe, "serve-tcp", "80")
	// Honest traffic works; the same from a stolen address, or from a
	// forged MAC, does not.
	r = u.nr("run", "--network", "open", "--", "/bin/sh", "-c",
		// (b's server may still be starting: run -d returns once its
		// command has started, not once it listens.)
		"for i in $(seq 30); do "+probe+" tcp -timeout 3s 10.80.0.2:80 honest 2>/dev/null && break; sleep 0.1; done; "+
			"ip addr add 10.80.0.99/24 dev eth0 && busybox ping -c2 -W1 -I 10.80.0.99 10.80.0.2; "+
			"ip addr del 10.80.0.99/24 dev eth0; ip link set eth0 address 02:42:0a:50:00:63 && busybox ping -c2 -W1 10.80.0.2; true")
	if !strings.Contains(r.stdout, "\nhonest") {
		t.Errorf("honest member-to-member TCP failed:\n%s", r)
	}
	if strings.Count(r.stdout, "2 packets transmitted, 0 packets received") != 2 {
		t.Errorf("spoofed source address or MAC got through:\n%s", r)
	}
}

// TestDHCPLease: a DHCP client in a member gets the IPAM address, router
// and DNS of the static configuration.
func TestDHCPLease(t *testing.T) {
	requireLauncher(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no busybox for udhcpc")
	}
	u := newUser(t)
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip router=$router dns=$dns\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	u.ok("network", "create", "--subnet", "10.90.0.0/24", "dhcpnet")
	r := u.ok("run", "--network", "dhcpnet", "--", "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-s", script)
	if !strings.Contains(r.stdout, "lease ip=10.90.0.2 router=10.90.0.1 dns=10.90.0.1") {
		t.Errorf("udhcpc lease:\n%s", r)
	}
}

// TestSupervisorKilled: a member whose supervisor dies (SIGKILL) gives its
// address and ports back.
func TestSupervisorKilled(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("run", "-d", "--name", "victim", "--network", "bridge", "-p", "18170:80", "--", probe, "serve-tcp", "80")
	waitTCP(t, "127.0.0.1:18170")
	agent := int(u.inspect("victim")["State"].(map[string]any)["Pid"].(float64))
	st, ok := readStat(agent)
	if !ok {
		t.Fatalf("agent %d not found", agent)
	}
	if err := syscall.Kill(st.ppid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the supervisor %d: %v", st.ppid, err)
	}
	// The daemon sees the session close and releases the port.
	freed := false
	for deadline := time.Now().Add(10 * time.Second); !freed && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if l, err := net.Listen("tcp", ":18170"); err == nil {
			l.Close()
			freed = true
		}
	}
	if !freed {
		t.Fatalf("the port of a killed supervisor is still held")
	}
	r := u.ok("run", "--network", "bridge", "-p", "18170:80", "--", probe, "ifinfo")
	if !strings.Contains(r.stdout, "172.17.0.2/16") {
		t.Errorf("the killed member's address should be free again:\n%s", r.stdout)
	}
}

// TestDaemonRestart: killing the network daemon wedges no member: it
// re-attaches to the next daemon with its address and ports (whose
// loopback clients keep their path: the member hands the new daemon a
// fresh dial channel), and that address is not handed out twice.
func TestDaemonRestart(t *testing.T) {
	requireLauncher(t)
	for i, mode := range fastPathModes {
		t.Run(mode.name, func(t *testing.T) { daemonRestart(t, mode, fmt.Sprint(18180+i), fmt.Sprint(18190+i)) })
	}
}

func daemonRestart(t *testing.T, mode fastPathMode, port, added string) {
	from := "from " + mode.from(bridgeNet) + ":"
	u := newUser(t)
	u.env = append(u.env, mode.env...)
	u.ok("run", "-d", "--name", "survivor", "--network", "bridge", "-p", port+":80", "--", probe, "serve-tcp", "80")
	if got := waitTCP(t, "127.0.0.1:"+port); !strings.HasPrefix(got, from) {
		t.Errorf("the survivor's port: %q; want it to see %s...", got, from)
	}
	// A port added while it runs survives the restart too.
	u.ok("port", "add", "survivor", added+":80")
	daemon := findDaemon(t, u)
	if err := syscall.Kill(daemon, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the daemon %d: %v", daemon, err)
	}
	for _, p := range []string{port, added} {
		if got := waitTCP(t, "127.0.0.1:"+p); !strings.HasPrefix(got, from) {
			t.Errorf("the survivor's port %s after the daemon restart: %q; want it to see %s...", p, got, from)
		}
	}
	r := u.ok("run", "--network", "bridge", "--", "/bin/sh", "-c", probe+" ifinfo; "+probe+" tcp -timeout 5s 172.17.0.2:80 again")
	if strings.Contains(r.stdout, "172.17.0.2/16") || !strings.Contains(r.stdout, "172.17.0.3/16") {
		t.Errorf("a new member got the survivor's address:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "\nagain") {
		t.Errorf("the survivor is not reachable on the segment after the restart:\n%s", r)
	}
}

// findDaemon finds this user's network daemon among our descendants or
// orphans (the test binary is their subreaper).
func findDaemon(t *testing.T, u *user) int {
	t.Helper()
	for _, p := range allProcs() {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
		if err != nil || !strings.HasSuffix(string(cmd), "netns-run\x00daemon\x00") {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
		if strings.Contains(string(env), "XDG_RUNTIME_DIR="+u.rt+"\x00") {
			return p.pid
		}
	}
	t.Fatal("no network daemon runs for this user")
	return 0
}

// tryTCP sends send to addr and returns what comes back until EOF, or ""
// when nothing answers.
func tryTCP(addr, send string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	c.Write([]byte(send))
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	return string(b)
}

// TestDefaultNetwork: a sandbox that names no network joins the shared
// bridge (172.17.0.0/16) and gets the whole core service there: outbound
// TCP and UDP, the host's resolvers, published ports that keep a world
// client's address, and the host loopback only when asked.
func TestDefaultNetwork(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	run := func(args ...string) result {
		t.Helper()
		// Not u.ok: that helper would add --network private to a bare run.
		r := runCmd(t, cmdOpts{env: u.env}, netnsRun, args...)
		wantExit(t, r, 0, "netns-run "+shellQuote(args))
		return r
	}
	r := run("--", "/bin/sh", "-c", probe+" ifinfo; cat /etc/resolv.conf; "+probe+" tcp "+whoamiAddr+" out-tcp; "+
		probe+" udp "+whoamiAddr+" out-udp; "+probe+" resolve "+worldName)
	for _, want := range []string{"172.17.0.2/16", "02:42:ac:11:00:02", "nameserver 172.17.0.1", "\nout-tcp", " out-udp\n", worldIP + "\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("a sandbox on the default network: no %q in\n%s", want, r)
		}
	}
	if !regexp.MustCompile(`from 198\.51\.100\.1:\d+\nout-tcp`).MatchString(r.stdout) {
		t.Errorf("outbound TCP should leave from the host's address:\n%s", r.stdout)
	}
	ln := serveWhoamiTCP(t, "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	closed := runCmd(t, cmdOpts{env: u.env}, netnsRun, "--", probe, "tcp", "-timeout", "3s", fmt.Sprintf("172.17.0.1:%d", port), "x")
	if closed.code == 0 {
		t.Errorf("the host loopback must be closed by default:\n%s", closed)
	}
	open := run("--host-loopback", "--", probe, "tcp", "-timeout", "5s", fmt.Sprintf("172.17.0.1:%d", port), "x")
	if !strings.Contains(open.stdout, "from 127.0.0.1:") {
		t.Errorf("--host-loopback on the default network:\n%s", open)
	}
	p := startCmd(t, cmdOpts{env: u.env}, netnsRun, "-p", "18190:80", "--", probe, "serve-tcp", "80")
	p.waitReady()
	resp := worldDial(t, "tcp", hostIP+":18190", "hello", 10*time.Second)
	if resp.Error != "" || !regexp.MustCompile(`^from 198\.51\.100\.2:\d+\nhello$`).MatchString(resp.Reply) {
		t.Errorf("world client through a port of the default network: %q %q", resp.Reply, resp.Error)
	}
	p.stop()
}

// TestNetworkConnect: a running sandbox joins a second network as eth1
// (its default route stays on eth0), is reachable and resolvable there,
// and leaves it again; its published port, on its first network, keeps
// the loopback fast path throughout.
func TestNetworkConnect(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", "10.99.0.0/24", "backend")
	u.ok("run", "-d", "--name", "multi", "--network", "bridge", "-p", "18196:80", "--", probe, "serve-tcp", "80")
	fromLo := regexp.MustCompile(`^from 127\.0\.0\.1:\d+\nx$`)
	if got := waitTCP(t, "127.0.0.1:18196"); !fromLo.MatchString(got) {
		t.Errorf("loopback client of multi's published port: %q; want it seen as 127.0.0.1", got)
	}
	u.ok("network", "connect", "--alias", "api", "backend", "multi")
	if got := tryTCP("127.0.0.1:18196", "x"); !fromLo.MatchString(got) {
		t.Errorf("loopback client of multi's published port after connect: %q; want it seen as 127.0.0.1", got)
	}
	r := u.ok("exec", "multi", "--", "/bin/sh", "-c", probe+" ifinfo eth1; ip route show default")
	if !strings.Contains(r.stdout, "10.99.0.2/24") || !strings.Contains(r.stdout, "default via 172.17.0.1 dev eth0") {
		t.Errorf("after connect, eth1 on backend and the default route still on eth0:\n%s", r.stdout)
	}
	ep := endpoint(t, u.inspect("multi"), "backend")
	if ep["IPAddress"] != "10.99.0.2" {
		t.Errorf("inspect: backend endpoint %v", ep)
	}
	endpoint(t, u.inspect("multi"), "bridge")
	r = u.ok("run", "--network", "backend", "--", "/bin/sh", "-c", probe+" resolve multi; "+probe+" resolve api; "+probe+" tcp -timeout 5s 10.99.0.2:80 on-backend")
	if !strings.HasPrefix(r.stdout, "10.99.0.2\n10.99.0.2\n") || !strings.Contains(r.stdout, "\non-backend") {
		t.Errorf("a backend member reaching multi by name and address:\n%s", r)
	}
	wantOwnError(t, u.nr("network", "disconnect", "bridge", "multi"), "disconnecting the first network", "bridge")
	wantOwnError(t, u.nr("network", "rm", "backend"), "removing a network a connected sandbox is on", "in use")
	u.ok("network", "disconnect", "backend", "multi")
	if got := tryTCP("127.0.0.1:18196", "x"); !fromLo.MatchString(got) {
		t.Errorf("loopback client of multi's published port after disconnect: %q; want it seen as 127.0.0.1", got)
	}
	r = u.nr("exec", "multi", "--", "/bin/sh", "-c", "ip -o link show | cut -d: -f2")
	if !strings.Contains(r.stdout, "eth0") || strings.Contains(r.stdout, "eth1") {
		t.Errorf("eth1 is still there after disconnect:\n%s", r.stdout)
	}
	u.ok("network", "rm", "backend")
}

// TestNetworkNone: --network none gives the sandbox lo and nothing else.
func TestNetworkNone(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	r := u.ok("run", "--network", "none", "--", "/bin/sh", "-c", "ip -o link show | cut -d: -f2 | tr -d ' '; cat /etc/hosts")
	if !strings.HasPrefix(r.stdout, "lo\n127.0.0.1\tlocalhost\n") {
		t.Errorf("--network none should have only lo, and hosts without a self line:\n%s", r.stdout)
	}
	wantOwnError(t, u.nr("run", "--network", "none", "-p", "18199:80", "--", probe, "exit", "0"), "-p with --network none", "--network none")
}

// TestKernelMacvlan: with privileges over a parent interface, -o parent
// hands the segment to the kernel: real macvlan sub-interfaces moved into
// the sandboxes. The test gets those privileges in a user+net namespace of
// its own, with one end of a veth pair as the parent; with --ipv6 the
// members are dual stack, the network's gateway their default route. -o promisc=on
// takes effect at network create and is taken back by network rm; without
// the privileges, network create refuses.
func TestKernelMacvlan(t *testing.T) {
	requireLauncher(t)
	unshare := requireTool(t, "unshare")
	rt := t.TempDir()
	script := fmt.Sprintf(`set -e
export XDG_RUNTIME_DIR=%[1]s HOME=%[1]s
ip link add parent0 type veth peer name parent0-peer && ip link set parent0 up && ip link set parent0-peer up
NR=%[2]s P=%[3]s
$NR network create -d macvlan --subnet 10.77.0.0/24 --gateway 10.77.0.1 -o parent=parent0 kmac >/dev/null
$NR run -d --name k1 --network kmac -- $P serve-tcp 80 >/dev/null
$NR run --network kmac -- /bin/sh -c "ip -d link show eth0 | grep -o 'macvlan mode bridge'; $P ifinfo; for i in 1 2 3 4 5 6 7 8 9 10; do $P tcp -timeout 2s 10.77.0.2:80 kernel && break; sleep 0.3; done"
$NR stop -t 1 k1 >/dev/null
$NR run -d --name k2 --ip 10.77.0.9 --network kmac -- $P serve-tcp 80 >/dev/null
$NR run --ip 10.77.0.9 --network kmac -- $P exit 0 2>/dev/null && echo "a held address was given twice"
agent=$($NR inspect k2 | sed -n 's/.*"Pid": *\([0-9][0-9]*\).*/\1/p' | head -n 1)
supervisor=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$agent/status)
kill -9 $supervisor
t0=$(date +%%s%%N)
for i in $(seq 30); do
	if $NR run --ip 10.77.0.9 --network kmac -- $P ifinfo 2>/dev/null | grep -o '10.77.0.9/24'; then break; fi
	sleep 0.1
done
echo "address of a SIGKILLed member free after $(( ($(date +%%s%%N) - t0) / 1000000 )) ms"
$NR network create -d macvlan --ipv6 --subnet 10.76.0.0/24 --subnet 2001:db8:76::/64 -o parent=parent0 k6 >/dev/null
$NR run -d --name k61 --network k6 -- $P serve-tcp [::]:80 >/dev/null
$NR run --network k6 --ip6 2001:db8:76::9 -- /bin/sh -c "ip -6 route show default | sed 's/^/v6 route: /'; for i in 1 2 3 4 5 6 7 8 9 10; do $P tcp -timeout 2s [2001:db8:76::2]:80 kernel6 && break; sleep 0.3; done"
echo "k61 inspect: $($NR inspect -f '{{.NetworkSettings.Networks.k6.GlobalIPv6Address}} {{.NetworkSettings.Networks.k6.IPv6Gateway}}' k61)"
$NR stop -t 1 k61 >/dev/null
$NR network create -d macvlan --subnet 10.79.0.0/24 -o parent=parent0-peer -o promisc=on kpromisc >/dev/null
echo "promisc after create: $(ip -d link show parent0-peer | grep -o 'promiscuity [0-9]*' | cut -d' ' -f2)"
$NR network rm kpromisc >/dev/null
echo "promisc after rm: $(ip -d link show parent0-peer | grep -o 'promiscuity [0-9]*' | cut -d' ' -f2)"
`, rt, netnsRun, probe)
	r := runCmd(t, cmdOpts{}, unshare, "--user", "--map-root-user", "--net", "--mount", "/bin/sh", "-c", script)
	wantExit(t, r, 0, "a kernel macvlan network in a user+net namespace")
	if strings.Contains(r.stdout, "given twice") {
		t.Errorf("a static --ip a running kernel macvlan member holds was accepted again:\n%s", r)
	}
	// A SIGKILLed supervisor gives its lease back at once, as a member of
	// a userspace segment does (TestSupervisorKilled).
	freed := regexp.MustCompile(`10\.77\.0\.9/24\naddress of a SIGKILLed member free after (\d+) ms`).FindStringSubmatch(r.stdout)
	if freed == nil {
		t.Errorf("the address of a SIGKILLed kernel macvlan member was not given again:\n%s", r)
	} else {
		t.Logf("the address of a SIGKILLed member was taken again after %s ms (the new run included)", freed[1])
		if ms, _ := strconv.Atoi(freed[1]); ms > 1500 {
			t.Errorf("the address of a SIGKILLed kernel macvlan member took %d ms to be free (want about a second at most):\n%s", ms, r)
		}
	}
	for _, want := range []string{"macvlan mode bridge", "10.77.0.3/24", "02:42:0a:4d:00:03"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the second member's eth0: no %q in\n%s", want, r)
		}
	}
	if !regexp.MustCompile(`from 10\.77\.0\.3:\d+\nkernel`).MatchString(r.stdout) {
		t.Errorf("member to member over the kernel macvlan:\n%s", r)
	}
	// --ipv6: each member gets an address of the IPv6 subnet too (--ip6
	// picks one), the network's gateway as its default route, and talks
	// to the others over IPv6.
	if !regexp.MustCompile(`from \[2001:db8:76::9\]:\d+\nkernel6`).MatchString(r.stdout) {
		t.Errorf("member to member over IPv6 on a kernel macvlan (from --ip6 2001:db8:76::9):\n%s", r)
	}
	for _, want := range []string{"v6 route: default via 2001:db8:76::1 dev eth0", "k61 inspect: 2001:db8:76::2 2001:db8:76::1\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("an IPv6 kernel macvlan member: no %q in\n%s", want, r)
		}
	}
	if !strings.Contains(r.stdout, "promisc after create: 1\n") || !strings.Contains(r.stdout, "promisc after rm: 0\n") {
		t.Errorf("-o promisc=on: want the parent promiscuous from network create to network rm:\n%s", r)
	}
	// Without privileges over the parent, network create refuses, in one
	// line that says what to do, and makes nothing.
	u := newUser(t)
	wantOwnError(t, u.nr("network", "create", "-d", "macvlan", "--subnet", "10.78.0.0/24", "-o", "parent=world0", "nopriv"),
		"a kernel macvlan without privileges", "needs CAP_NET_ADMIN over it (run as root), or drop -o parent to use the userspace macvlan network")
	if ls := u.ok("network", "ls").stdout; strings.Contains(ls, "nopriv") {
		t.Errorf("a refused network is listed:\n%s", ls)
	}
}

// TestDetachedLifecycle: -d keeps output in a log, ps -a shows an exited
// sandbox until rm, --rm forgets it by itself.
func TestDetachedLifecycle(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	id := strings.TrimSpace(u.ok("run", "-d", "--name", "chatty", "--network", "bridge", "--", "/bin/sh", "-c", "echo hello; exec "+probe+" sleep 60s").stdout)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Errorf("run -d should print the 64-hex id: %q", id)
	}
	var logs string
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs, "hello") && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		logs = u.ok("logs", "chatty").stdout
	}
	if logs != "hello\n" {
		t.Errorf("logs chatty: %q", logs)
	}
	follow := startCmd(t, cmdOpts{env: u.env}, netnsRun, "logs", "-f", "chatty")
	u.ok("stop", "-t", "1", "chatty")
	if r := follow.wait(10 * time.Second); r.code != 0 || r.stdout != "hello\n" {
		t.Errorf("logs -f should print the log and return when the sandbox exits:\n%s", r)
	}
	if ps := u.ok("ps").stdout; strings.Contains(ps, "chatty") {
		t.Errorf("ps lists a stopped sandbox:\n%s", ps)
	}
	if ps := u.ok("ps", "-a").stdout; !regexp.MustCompile(`(?m)^` + id[:12] + ` .*Exited \(143\) .* chatty$`).MatchString(ps) {
		t.Errorf("ps -a should show chatty as exited by SIGTERM:\n%s", ps)
	}
	u.ok("rm", "chatty")
	if ps := u.ok("ps", "-a").stdout; strings.Contains(ps, "chatty") {
		t.Errorf("rm left chatty in ps -a:\n%s", ps)
	}
	u.ok("run", "-d", "--rm", "--name", "fleeting", "--network", "bridge", "--", probe, "sleep", "60s")
	u.ok("stop", "-t", "1", "fleeting")
	if ps := u.ok("ps", "-a").stdout; strings.Contains(ps, "fleeting") {
		t.Errorf("--rm sandbox still listed after it stopped:\n%s", ps)
	}
}

// TestInternalNetwork: --internal members reach each other and each
// other's names, but nothing outside.
func TestInternalNetwork(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--internal", "--subnet", "10.66.0.0/24", "inet")
	u.ok("run", "-d", "--name", "peer", "--network", "inet", "--mac-address", "02:42:aa:bb:cc:dd", "--", probe, "serve-tcp", "80")
	r := u.nr("run", "--network", "inet", "--", "/bin/sh", "-c",
		probe+" tcp -timeout 5s peer:80 inside; "+probe+" tcp -timeout 2s "+whoamiAddr+" outside; "+probe+" resolve -timeout 2s "+worldName+"; ip neigh show 10.66.0.2")
	if !strings.Contains(r.stdout, "\ninside") {
		t.Errorf("members of an internal network should reach each other by name:\n%s", r)
	}
	if strings.Contains(r.stdout, "outside") || strings.Contains(r.stdout, worldIP+"\n") {
		t.Errorf("a member of an internal network reached the world:\n%s", r)
	}
	if !strings.Contains(r.stdout, "02:42:aa:bb:cc:dd") {
		t.Errorf("--mac-address: the peer should be known by its own MAC:\n%s", r)
	}
}
