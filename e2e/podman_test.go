package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestPodmanOnSlirp4netns: the real rootless Podman 4 with netns-run as
// its slirp4netns (network_cmd_path): a container gets 10.0.2.100/24,
// and an fd00::/64 address, reaches the test world, reaches the host's
// loopback at 10.0.2.2 only with allow_host_loopback=true, and serves
// published TCP and UDP ports from the host's loopback, through
// rootlessport and through port_handler=slirp4netns (our API socket); its
// slirp4netns ends with the container. A user-defined network runs one
// slirp4netns for Podman's rootless-netns, reaches the world and publishes
// through rootlessport, and ends on SIGTERM with the last container. The image is the
// static probe alone, imported (no registry); every Podman call is
// time-boxed. The same checks run with the reference slirp4netns when it
// is installed, so that a failure says whether netns-run or Podman broke.
func TestPodmanOnSlirp4netns(t *testing.T) {
	requireLauncher(t)
	requireTool(t, "podman")
	for name, bin := range slirp4netnsBinaries(t) {
		t.Run(name, func(t *testing.T) { podmanOn(t, bin, name == "netns-run") })
	}
}

func podmanOn(t *testing.T, ours string, netnsRun bool) {
	// Podman keeps its runtime files in the launcher's XDG_RUNTIME_DIR,
	// removed when the suite ends: late writers (conmon's "podman container
	// cleanup") leave nothing behind, and the API socket's path
	// ($XDG_RUNTIME_DIR/libpod/tmp/<64 hex>.net) fits a socket address.
	d := t.TempDir()
	if len(os.Getenv("XDG_RUNTIME_DIR"))+len("/libpod/tmp/.net")+64 > 107 {
		t.Skipf("XDG_RUNTIME_DIR %s is too long for Podman's API socket path", os.Getenv("XDG_RUNTIME_DIR"))
	}
	script := fmt.Sprintf(`set -e
D=%[1]s P=%[2]s OURS=%[3]s
# The storage too lives in the runtime dir: its layers belong to the
# user's subordinate ids, which only the launcher can remove.
S=$(mktemp -d "$XDG_RUNTIME_DIR/podman.XXXXXX")
mkdir -p $D/rootfs/etc && cp $P $D/rootfs/probe && tar -C $D/rootfs -cf $D/rootfs.tar .
cat > $D/containers.conf <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
network_cmd_path = "$OURS"
CONF
cat > $D/storage.conf <<CONF
[storage]
driver = "vfs"
runroot = "$S/run"
graphroot = "$S/graph"
CONF
export CONTAINERS_CONF=$D/containers.conf CONTAINERS_STORAGE_CONF=$D/storage.conf
PM="timeout 60 podman"
$PM import $D/rootfs.tar localhost/probe:latest >/dev/null
$PM run --rm --network slirp4netns localhost/probe /probe ifinfo tap0
$PM run --rm --network slirp4netns localhost/probe /probe tcp -timeout 5s 198.51.100.2:7777 podman-out
echo
$P serve-tcp 18735 >/dev/null &
HOSTSRV=$!
echo "host loopback allowed: $($PM run --rm --network slirp4netns:allow_host_loopback=true localhost/probe /probe tcp -timeout 5s 10.0.2.2:18735 hl-on 2>&1 | tr '\n' ' ')"
echo "host loopback default: $($PM run --rm --network slirp4netns localhost/probe /probe tcp -timeout 5s 10.0.2.2:18735 hl-off 2>&1 | tr '\n' ' ')"
kill $HOSTSRV
$PM run -d --name web --network slirp4netns -p 127.0.0.1:18730:80 localhost/probe /probe serve-tcp 80 >/dev/null
$PM run -d --name api --network slirp4netns:port_handler=slirp4netns -p 127.0.0.1:18731:80 localhost/probe /probe serve-tcp 80 >/dev/null
$PM run -d --name webudp --network slirp4netns -p 127.0.0.1:18732:53/udp localhost/probe /probe serve-udp 53 >/dev/null
$PM run -d --name apiudp --network slirp4netns:port_handler=slirp4netns -p 127.0.0.1:18733:53/udp localhost/probe /probe serve-udp 53 >/dev/null
sleep 1
echo "rootlessport: $($P tcp -timeout 5s 127.0.0.1:18730 via-rootlessport | tr '\n' ' ')"
echo "api: $($P tcp -timeout 5s 127.0.0.1:18731 via-api | tr '\n' ' ')"
echo "rootlessport udp: $($P udp -timeout 5s 127.0.0.1:18732 via-rootlessport-udp)"
echo "api udp: $($P udp -timeout 5s 127.0.0.1:18733 via-api-udp)"
$PM stop -t 0 web api webudp apiudp >/dev/null
$PM rm web api webudp apiudp >/dev/null
# Each one ends when conmon, holding its exit fd, does.
for i in $(seq 50); do pgrep -f "^$OURS --disable-host-loopback" >/dev/null || break; sleep 0.1; done
pgrep -f "^$OURS --disable-host-loopback" >/dev/null && echo "a slirp4netns outlived its container" || true
# A user-defined network: one slirp4netns for the user's rootless-netns
# (no exit fd), ended by SIGTERM when its last container leaves.
$PM network create nrnet >/dev/null
$PM run -d --name netweb --network nrnet -p 127.0.0.1:18734:80 localhost/probe /probe serve-tcp 80 >/dev/null
sleep 1
echo "rootless-netns: $(pgrep -fc "^$OURS .*rootless-netns") process"
echo "rootless-netns out: $($PM run --rm --network nrnet localhost/probe /probe tcp -timeout 5s 198.51.100.2:7777 netns-out | tr '\n' ' ')"
echo "rootless-netns port: $($P tcp -timeout 5s 127.0.0.1:18734 via-netns | tr '\n' ' ')"
$PM stop -t 0 netweb >/dev/null
$PM rm netweb >/dev/null
for i in $(seq 50); do pgrep -f "^$OURS .*rootless-netns" >/dev/null || break; sleep 0.1; done
pgrep -f "^$OURS .*rootless-netns" >/dev/null && echo "the rootless-netns slirp4netns outlived its last container" || true
$PM network rm nrnet >/dev/null
# End the pause process that holds Podman's user namespace (by its pid
# file).
[ -f $XDG_RUNTIME_DIR/libpod/tmp/pause.pid ] && kill "$(cat $XDG_RUNTIME_DIR/libpod/tmp/pause.pid)" 2>/dev/null || true
`, d, probe, ours)
	r := runCmd(t, cmdOpts{timeout: 4 * time.Minute}, "/bin/sh", "-c", script)
	wantExit(t, r, 0, "rootless podman with netns-run as slirp4netns")
	for _, want := range []string{
		"addr 10.0.2.100/24", "mtu 65520", "from 198.51.100.1:", "podman-out",
		"from 127.0.0.1:", "hl-on", "host loopback default: probe: ",
		"rootlessport: from ", "via-rootlessport", "api: from ", "via-api",
		"rootlessport udp: from ", "via-rootlessport-udp",
		"rootless-netns: 1 process", "rootless-netns out: from 198.51.100.1:", "netns-out", "rootless-netns port: from ", "via-netns",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "outlived") {
		t.Errorf("a slirp4netns process outlived its container:\n%s", r)
	}
	if strings.Contains(r.stdout, "hl-off") {
		t.Errorf("the host's loopback answered without allow_host_loopback:\n%s", r)
	}
	// Podman passes --enable-ipv6: the container gets an fd00::/64
	// address by SLAAC.
	if !strings.Contains(r.stdout, "addr fd00::") {
		t.Errorf("the container has no fd00::/64 address:\n%s", r)
	}
	// The reference slirp4netns drops the replies of API UDP forwards with
	// --disable-host-loopback, which Podman always passes; netns-run must
	// not.
	if netnsRun && !strings.Contains(r.stdout, "api udp: from 10.0.2.2:") {
		t.Errorf("the API's UDP forward did not answer:\n%s", r)
	}
}
