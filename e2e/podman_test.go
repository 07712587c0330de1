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
// reaches the test world, and serves a published port from the host's
// loopback, through rootlessport and through port_handler=slirp4netns (our
// API socket); its slirp4netns ends with the container. The image is the
// static probe alone, imported (no registry); every Podman call is
// time-boxed. The same checks run with the reference slirp4netns when it
// is installed, so that a failure says whether netns-run or Podman broke.
func TestPodmanOnSlirp4netns(t *testing.T) {
	requireLauncher(t)
	requireTool(t, "podman")
	for name, bin := range slirp4netnsBinaries(t) {
		t.Run(name, func(t *testing.T) { podmanOn(t, bin) })
	}
}

func podmanOn(t *testing.T, ours string) {
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
$PM run -d --name web --network slirp4netns -p 127.0.0.1:18730:80 localhost/probe /probe serve-tcp 80 >/dev/null
$PM run -d --name api --network slirp4netns:port_handler=slirp4netns -p 127.0.0.1:18731:80 localhost/probe /probe serve-tcp 80 >/dev/null
sleep 1
echo "rootlessport: $($P tcp -timeout 5s 127.0.0.1:18730 via-rootlessport | tr '\n' ' ')"
echo "api: $($P tcp -timeout 5s 127.0.0.1:18731 via-api | tr '\n' ' ')"
$PM stop -t 0 web api >/dev/null
$PM rm web api >/dev/null
# Each one ends when conmon, holding its exit fd, does.
for i in $(seq 50); do pgrep -f "$OURS --disable-host-loopback" >/dev/null || break; sleep 0.1; done
pgrep -f "$OURS --disable-host-loopback" >/dev/null && echo "a slirp4netns outlived its container" || true
# End the pause process that holds Podman's user namespace (by its pid
# file).
[ -f $XDG_RUNTIME_DIR/libpod/tmp/pause.pid ] && kill "$(cat $XDG_RUNTIME_DIR/libpod/tmp/pause.pid)" 2>/dev/null || true
`, d, probe, ours)
	r := runCmd(t, cmdOpts{timeout: 4 * time.Minute}, "/bin/sh", "-c", script)
	wantExit(t, r, 0, "rootless podman with netns-run as slirp4netns")
	for _, want := range []string{"addr 10.0.2.100/24", "mtu 65520", "from 198.51.100.1:", "podman-out", "rootlessport: from ", "via-rootlessport", "api: from ", "via-api"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
	if strings.Contains(r.stdout, "outlived") {
		t.Errorf("a slirp4netns process outlived its container:\n%s", r)
	}
}
