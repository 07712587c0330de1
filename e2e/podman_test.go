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
	ours := filepath.Join(t.TempDir(), "slirp4netns")
	if err := os.Symlink(netnsRun, ours); err != nil {
		t.Fatal(err)
	}
	binaries := map[string]string{"netns-run": ours}
	if ref, err := exec.LookPath("slirp4netns"); err == nil {
		binaries["reference slirp4netns"] = ref
	}
	for name, bin := range binaries {
		t.Run(name, func(t *testing.T) { podmanOn(t, bin) })
	}
}

func podmanOn(t *testing.T, ours string) {
	// Podman's API socket path is $XDG_RUNTIME_DIR/libpod/tmp/<64 hex>.net,
	// and Podman itself cannot dial one longer than a socket address (108
	// bytes): a runtime directory as short as a distro's /run/user/UID.
	d, err := os.MkdirTemp("/tmp", "pm")
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e
D=%[1]s P=%[2]s OURS=%[3]s
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
runroot = "$D/run"
graphroot = "$D/graph"
CONF
export CONTAINERS_CONF=$D/containers.conf CONTAINERS_STORAGE_CONF=$D/storage.conf XDG_RUNTIME_DIR=$D
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
# The image's layers belong to the user's subordinate ids: remove them
# from inside Podman's user namespace.
$PM unshare rm -rf $D/graph $D/run
`, d, probe, ours)
	t.Cleanup(func() { os.RemoveAll(d) })
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
