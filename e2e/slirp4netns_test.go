package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSlirp4netnsPodmanMode: netns-run answering as slirp4netns with the
// command line rootless Podman 4 passes (a namespace path from inside the
// owning user namespace, -c, exit and ready fds, an API socket): the
// namespace gets 10.0.2.100/24 on tap0 and its route, reaches the world
// and the DNS forwarder at 10.0.2.3, and API forwards from the host's
// loopback reach servers inside over TCP and UDP (with
// --disable-host-loopback); with --enable-ipv6 tap0 gets an fd00::/64
// address by SLAAC at once (no DAD wait), the default route via the
// gateway's link-local address, DNS at fd00::3, an immediate refusal
// where the host has no IPv6 route, the host's loopback refused at
// fd00::2 too, and forwards from the host's ::1; closing the exit fd ends
// the process and removes the socket.
func TestSlirp4netnsPodmanMode(t *testing.T) {
	requireLauncher(t)
	unshare := requireTool(t, "unshare")
	requireTool(t, "nsenter")
	d := t.TempDir()
	script := fmt.Sprintf(`set -e
D=%[1]s NR=%[2]s P=%[3]s
unshare --net sleep 60 &
HOLDER=$!
for i in $(seq 50); do [ "$(readlink /proc/$HOLDER/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.05; done
touch $D/netns && mount --bind /proc/$HOLDER/ns/net $D/netns
mkfifo $D/ready $D/exit
unshare --mount $NR slirp4netns --disable-host-loopback --mtu=65520 --enable-sandbox --enable-seccomp --enable-ipv6 -c -e 3 -r 4 --api-socket $D/api.sock --netns-type=path $D/netns tap0 3<$D/exit 4>$D/ready 2>$D/log &
SLIRP=$!
exec 5>$D/exit
echo "ready: $(head -c1 $D/ready)"
echo "sandbox: $(grep -E '^(CapEff|NoNewPrivs):' /proc/$SLIRP/status | tr -s '\t\n' '  ')root entries $(ls -A /proc/$SLIRP/root | wc -l)"
IN="nsenter --net=$D/netns"
$IN ip -o -4 addr show tap0
$IN ip -o link show tap0 | grep -o 'mtu [0-9]*'
$IN ip route show default
$IN $P tcp -timeout 5s 198.51.100.2:7777 out-tcp
echo
for i in $(seq 100); do $IN ip -o -6 addr show dev tap0 scope global | grep -q 'fd00::' && break; sleep 0.02; done
echo "slaac after $((i * 20)) ms: $($IN ip -o -6 addr show dev tap0 scope global | grep -o 'inet6 [^ ]*') $($IN ip -o -6 addr show dev tap0 scope global | grep -o tentative || true)"
$IN ip -6 route show default
$P serve-tcp [::1]:18613 > /dev/null 5>&- &
HOSTSRV=$!
sleep 0.2
$IN $P tcp -timeout 3s [fd00::2]:18613 v6-loopback 2>&1 | sed 's/^/host loopback v6: /' || true
$IN $P tcp -timeout 5s [2001:db8::2]:7777 v6-out
echo
$IN $P tcp -timeout 5s [2001:db8:ffff::2]:7777 v6-unroutable 2>&1 | sed 's/^/no v6 route: /' || true
kill $HOSTSRV
echo "nameserver 10.0.2.3" > $D/resolv.conf && mount --bind $D/resolv.conf /etc/resolv.conf
echo "resolved: $($IN $P resolve -timeout 5s world.e2e.test)"
echo "nameserver fd00::3" > $D/resolv.conf
echo "resolved over v6: $($IN $P resolve -timeout 5s world.e2e.test)"
$IN $P serve-tcp 80 > $D/tcp.out 5>&- &
TCPSRV=$!
$IN $P serve-udp 53 > $D/udp.out 5>&- &
UDPSRV=$!
sleep 0.3
echo "add tcp: $($P unix $D/api.sock '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":18611,"guest_addr":"","guest_port":80}}')"
echo "add udp: $($P unix $D/api.sock '{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"127.0.0.1","host_port":18612,"guest_addr":"10.0.2.100","guest_port":53}}')"
echo "list: $($P unix $D/api.sock '{"execute":"list_hostfwd"}')"
echo "bad: $($P unix $D/api.sock 'not json')"
echo "unknown: $($P unix $D/api.sock '{"execute":"nope"}')"
echo "tcp forward: $($P tcp -timeout 5s 127.0.0.1:18611 via-api | tr '\n' ' ')"
echo "add tcp v6: $($P unix $D/api.sock '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"::1","host_port":18614,"guest_port":80}}')"
echo "tcp forward from ::1: $($P tcp -timeout 5s [::1]:18614 via-api-v6 | tr '\n' ' ')"
echo "udp forward: $($P udp -timeout 5s 127.0.0.1:18612 via-api-udp)"
echo "remove: $($P unix $D/api.sock '{"execute":"remove_hostfwd","arguments":{"id":1}}')"
$P tcp -timeout 2s 127.0.0.1:18611 gone >/dev/null 2>&1 && echo "a removed forward still answers"
exec 5>&-
t0=$(date +%%s%%N)
wait $SLIRP && echo "exit status 0 after $(( ($(date +%%s%%N) - t0) / 1000000 )) ms"
[ -e $D/api.sock ] && echo "the API socket was left behind"
kill $TCPSRV $UDPSRV $HOLDER 2>/dev/null || true
cat $D/log >&2
`, d, netnsRun, probe)
	r := runCmd(t, cmdOpts{timeout: time.Minute}, unshare, "--user", "--map-root-user", "--mount", "/bin/sh", "-c", script)
	wantExit(t, r, 0, "the Podman command line")
	for _, want := range []string{
		"ready: 1\n",
		// --enable-sandbox: no capability but CAP_NET_BIND_SERVICE, no new
		// privileges, an empty root (the process has a mount namespace of
		// its own, as Podman gives it).
		"sandbox: CapEff: 0000000000000400 NoNewPrivs: 1 root entries 0",
		"inet 10.0.2.100/24",
		"mtu 65520\n",
		"default via 10.0.2.2 dev tap0",
		"from 198.51.100.1:", // the world sees the host's address
		"out-tcp",
		"resolved: 198.51.100.2\n",
		"resolved over v6: 198.51.100.2\n",
		"inet6 fd00::", // SLAAC from the gateway's router advertisements
		"default via fe80::42:aff:fe00:202 dev tap0",
		"host loopback v6: probe: ", // refused: --disable-host-loopback
		`add tcp v6: {"return":{"id":3}}`,
		"tcp forward from ::1: from 10.0.2.2:",
		"from [2001:db8::1]:", "v6-out",
		"via-api-v6",
		`add tcp: {"return":{"id":1}}`,
		`add udp: {"return":{"id":2}}`,
		`"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":18611,"guest_addr":"10.0.2.100","guest_port":80},{"id":2,"proto":"udp"`,
		`bad: {"error":{"desc":"bad request:`,
		`unknown: {"error":{"desc":"bad request: unknown execute`,
		"tcp forward: from 10.0.2.2:", // a loopback client appears as the gateway, as with slirp4netns
		"via-api",
		"udp forward: from 10.0.2.2:",
		"via-api-udp",
		`remove: {"return":{}}`,
		"exit status 0 after",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	for _, bad := range []string{"still answers", "left behind", "tentative", "v6-loopback"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("%s:\n%s", bad, r)
		}
	}
	if !regexp.MustCompile(`no v6 route: probe: .*connection refused`).MatchString(r.stdout) {
		t.Errorf("IPv6 without a host route: want an immediate refusal:\n%s", r)
	}
	if m := regexp.MustCompile(`slaac after (\d+) ms`).FindStringSubmatch(r.stdout); m != nil {
		t.Logf("tap0 had its SLAAC address %s ms after the ready fd", m[1])
	}
	if m := regexp.MustCompile(`exit status 0 after (\d+) ms`).FindStringSubmatch(r.stdout); m != nil {
		t.Logf("exited %s ms after the exit fd closed", m[1])
	}
}

// TestSlirp4netnsRootlessKitMode: RootlessKit's command line, from the
// initial user namespace with a PID target whose user namespace is not
// ours and a tap0 it made itself (no -c): the helper joins both
// namespaces, the ready fd gets "1", --enable-sandbox sets no_new_privs
// (the root stays: the mount namespace is the parent's), the host's
// loopback reached at the gateway sees --outbound-addr as the source, the
// host's ::1 is reached at fd00::2 with --enable-ipv6, and SIGKILL
// (RootlessKit's teardown) leaves nothing running.
func TestSlirp4netnsRootlessKitMode(t *testing.T) {
	requireLauncher(t)
	requireTool(t, "unshare")
	requireTool(t, "nsenter")
	d := t.TempDir()
	script := fmt.Sprintf(`set -e
D=%[1]s NR=%[2]s P=%[3]s
unshare --user --map-root-user --net /bin/sh -c 'ip tuntap add name tap0 mode tap && ip link set tap0 up && ip addr add 10.0.3.100/24 dev tap0 && ip route add default via 10.0.3.2 && touch '$D'/made && exec sleep 60' &
CHILD=$!
for i in $(seq 100); do [ -e $D/made ] && break; sleep 0.05; done
mkfifo $D/ready
$P serve-tcp 18741 [::1]:18741 > $D/hostsrv &
HOSTSRV=$!
$NR slirp4netns --mtu 65520 -r 3 --cidr 10.0.3.0/24 --outbound-addr=127.0.0.2 --enable-sandbox --enable-seccomp --enable-ipv6 $CHILD tap0 3>$D/ready 2>$D/log &
SLIRP=$!
echo "ready: $(head -c1 $D/ready)"
echo "sandbox: $(grep -E '^NoNewPrivs:' /proc/$SLIRP/status | tr -s '\t' ' ')"
IN="nsenter -t $CHILD -U -n --preserve-credentials"
$IN $P tcp -timeout 5s 10.0.3.2:18741 rk-tcp
echo
# tap0 was made with duplicate address detection on: its SLAAC address
# is usable about a second after the advertisement.
for i in $(seq 100); do $IN ip -o -6 addr show dev tap0 scope global | grep -v tentative | grep -q 'fd00::' && break; sleep 0.05; done
$IN $P tcp -timeout 5s [fd00::2]:18741 rk-tcp6
echo
kill $HOSTSRV
kill -9 $SLIRP
wait $SLIRP || echo "killed: $?"
kill -0 $SLIRP 2>/dev/null && echo "still running after SIGKILL"
kill $CHILD
cat $D/log >&2
`, d, netnsRun, probe)
	r := runCmd(t, cmdOpts{timeout: time.Minute}, "/bin/sh", "-c", script)
	wantExit(t, r, 0, "the RootlessKit command line")
	// The host's loopback, reached at the gateway, sees --outbound-addr.
	for _, want := range []string{"ready: 1\n", "sandbox: NoNewPrivs: 1", "from 127.0.0.2:", "rk-tcp", "from [::1]:", "rk-tcp6", "killed: 137"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "still running") {
		t.Errorf("the process survived SIGKILL:\n%s", r)
	}
}

// TestSlirp4netnsCommandLine: --help lists every flag the clients look
// for and exits 0; a bad flag is one line and exit 1, as slirp4netns.
func TestSlirp4netnsCommandLine(t *testing.T) {
	requireLauncher(t)
	r := runNR(t, "slirp4netns", "--help")
	wantExit(t, r, 0, "--help")
	for _, flag := range []string{"--netns-type", "--enable-ipv6", "--api-socket", "--disable-host-loopback", "--mtu", "--cidr", "--enable-sandbox", "--enable-seccomp", "--outbound-addr", "--userns-path", "--macaddress"} {
		if !strings.Contains(r.stdout, flag) {
			t.Errorf("--help lacks %s:\n%s", flag, r.stdout)
		}
	}
	// Invoked as slirp4netns (make install's link), it answers the same.
	link := filepath.Join(t.TempDir(), "slirp4netns")
	if err := os.Symlink(netnsRun, link); err != nil {
		t.Fatal(err)
	}
	if r := runCmd(t, cmdOpts{}, link, "--help"); r.code != 0 || !strings.Contains(r.stdout, "--netns-type") {
		t.Errorf("as slirp4netns, --help:\n%s", r)
	}
	r = runNR(t, "slirp4netns", "--version")
	wantExit(t, r, 0, "--version")
	if !strings.HasPrefix(r.stdout, "slirp4netns version ") || !strings.Contains(r.stdout, "netns-run") {
		t.Errorf("--version: %q", r.stdout)
	}
	r = runNR(t, "slirp4netns", "--no-such-flag", "1", "tap0")
	wantExit(t, r, 1, "an unknown flag")
	if lines := nonEmptyLines(r.stderr); len(lines) != 1 || !strings.Contains(lines[0], "--no-such-flag") {
		t.Errorf("an unknown flag: want one line naming it, got %q", r.stderr)
	}
}

// TestRootlessKitOnSlirp4netns: the real RootlessKit, as rootless Docker
// runs it (--net=slirp4netns, its slirp4netns and builtin port drivers,
// rootlessctl add-ports and remove-ports), with netns-run as its
// slirp4netns; and the same checks with the reference slirp4netns when it
// is installed, so that a failure says whether netns-run or the client
// broke.
func TestRootlessKitOnSlirp4netns(t *testing.T) {
	requireLauncher(t)
	rootlesskit := requireTool(t, "rootlesskit")
	rootlessctl := requireTool(t, "rootlessctl")
	for name, bin := range slirp4netnsBinaries(t) {
		for _, driver := range []string{"slirp4netns", "builtin"} {
			t.Run(name+"/"+driver, func(t *testing.T) { rootlessKitOn(t, rootlesskit, rootlessctl, bin, driver) })
		}
	}
}

func rootlessKitOn(t *testing.T, rootlesskit, rootlessctl, bin, driver string) {
	// A short directory: the API socket's path must fit a unix
	// socket address (108 bytes), for either binary.
	d, err := os.MkdirTemp("", "rk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	script := fmt.Sprintf(`set -e
D=%[1]s RK=%[2]s CTL=%[3]s BIN=%[4]s P=%[5]s
$RK --state-dir=$D/rk --net=slirp4netns --slirp4netns-binary=$BIN --disable-host-loopback --copy-up=/etc --port-driver=%[6]s -- /bin/sh -c "$P ifinfo tap0; $P tcp -timeout 5s 198.51.100.2:7777 rk-out; echo; exec $P serve-tcp 80" > $D/out 2>$D/err &
RKPID=$!
for i in $(seq 100); do grep -q ready $D/out 2>/dev/null && break; sleep 0.1; done
cat $D/out
grep -q ready $D/out || { echo "rootlesskit did not start its command"; cat $D/err >&2; kill $RKPID; exit 1; }
timeout 10 $CTL --socket $D/rk/api.sock add-ports 127.0.0.1:18720:80/tcp
echo "forward: $($P tcp -timeout 5s 127.0.0.1:18720 via-rootlessctl | tr '\n' ' ')"
timeout 10 $CTL --socket $D/rk/api.sock list-ports
timeout 10 $CTL --socket $D/rk/api.sock remove-ports 1
$P tcp -timeout 2s 127.0.0.1:18720 gone >/dev/null 2>&1 && echo "a removed port still answers"
kill $RKPID
wait $RKPID || true
sleep 0.3
pgrep -f "$BIN --mtu" >/dev/null && echo "its slirp4netns outlived rootlesskit"
cat $D/err >&2
`, d, rootlesskit, rootlessctl, bin, probe, driver)
	r := runCmd(t, cmdOpts{timeout: time.Minute}, "/bin/sh", "-c", script)
	wantExit(t, r, 0, "rootlesskit --net=slirp4netns --port-driver="+driver+" with "+bin)
	for _, want := range []string{"10.0.2.100/24", "from 198.51.100.1:", "rk-out", "forward: from ", "via-rootlessctl", "PARENTPORT", "18720"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	for _, bad := range []string{"still answers", "outlived"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("%s:\n%s", bad, r)
		}
	}
}

// slirp4netnsBinaries are the slirp4netns a client test runs on: netns-run
// (through a link named slirp4netns, as make install makes it) and, when it
// is installed, the reference, so that a failure says whether netns-run or
// the client broke.
func slirp4netnsBinaries(t *testing.T) map[string]string {
	t.Helper()
	ours := filepath.Join(t.TempDir(), "slirp4netns")
	if err := os.Symlink(netnsRun, ours); err != nil {
		t.Fatal(err)
	}
	binaries := map[string]string{"netns-run": ours}
	if ref, err := exec.LookPath("slirp4netns"); err == nil {
		binaries["reference slirp4netns"] = ref
	}
	return binaries
}
