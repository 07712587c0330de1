package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRootlessDockerOnSlirp4netns: the real rootless Docker
// (dockerd-rootless.sh, which runs dockerd under RootlessKit with
// --net=slirp4netns) with netns-run as the slirp4netns it finds first on
// PATH: an image of the static probe alone, imported (no registry), serves
// a published port to the host's loopback, through RootlessKit's builtin
// port driver and through its slirp4netns port driver (our API socket), and
// a container reaches the test world through Docker's bridge NAT and
// slirp4netns. dockerd, stopped by its pid, takes its slirp4netns and
// every process of its own with it. Every docker call is time-boxed. The
// same checks run with the reference slirp4netns when it is installed, so
// that a failure says whether netns-run or Docker broke.
func TestRootlessDockerOnSlirp4netns(t *testing.T) {
	requireLauncher(t)
	script := dockerdRootlessScript(t)
	requireTool(t, "dockerd")
	requireTool(t, "docker")
	requireTool(t, "rootlesskit")
	// dockerd's userland proxy under RootlessKit: it asks RootlessKit for
	// each published port (Debian's rootlesskit package has it).
	requireTool(t, "rootlesskit-docker-proxy")
	requireTool(t, "pgrep")
	for name, bin := range slirp4netnsBinaries(t) {
		t.Run(name, func(t *testing.T) {
			for i, portDriver := range []string{"builtin", "slirp4netns"} {
				t.Run("port-driver="+portDriver, func(t *testing.T) {
					dockerdOn(t, script, bin, portDriver, 18760+i)
				})
			}
		})
	}
}

// dockerdRootlessScript is dockerd-rootless.sh: on PATH (Docker's own
// packages) or where Debian's docker.io keeps it.
func dockerdRootlessScript(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("dockerd-rootless.sh"); err == nil {
		return p
	}
	const debian = "/usr/share/docker.io/contrib/dockerd-rootless.sh"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	t.Skipf("dockerd-rootless.sh is not installed (neither on PATH nor at %s)", debian)
	return ""
}

func dockerdOn(t *testing.T, script, bin, portDriver string, port int) {
	// A short directory: the sockets of dockerd, containerd and the
	// slirp4netns API live under it and must fit a unix socket address.
	d, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := removeAllForced(d); err != nil {
			t.Errorf("removing what rootless Docker left: %v", err)
		}
	})
	exe, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatal(err)
	}
	sh := fmt.Sprintf(`set -e
D=%[1]s SCRIPT=%[2]s BIN=%[3]s PD=%[4]s PORT=%[5]d P=%[6]s
# dockerd-rootless.sh runs rootlesskit, which runs the slirp4netns first on
# PATH.
mkdir $D/bin $D/run && ln -s $BIN $D/bin/slirp4netns
# The image: the probe alone, every file root's (in Docker's user
# namespace: the test user's, who can remove them).
mkdir -p $D/rootfs/etc && cp $P $D/rootfs/probe && tar --numeric-owner --owner=0 --group=0 -C $D/rootfs -cf $D/rootfs.tar .
# XDG_CONFIG_HOME: where rootless dockerd reads daemon.json and writes
# its key.json.
PATH=$D/bin:$PATH XDG_RUNTIME_DIR=$D/run XDG_CONFIG_HOME=$D/config \
DOCKERD_ROOTLESS_ROOTLESSKIT_NET=slirp4netns DOCKERD_ROOTLESS_ROOTLESSKIT_MTU=65520 \
DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER=$PD DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS=--state-dir=$D/rk \
	$SCRIPT --data-root=$D/data --exec-root=$D/exec --pidfile=$D/dockerd.pid \
	--host=unix://$D/docker.sock --storage-driver=vfs --exec-opt native.cgroupdriver=cgroupfs \
	> $D/dockerd.log 2>&1 &
DPID=$!
# stop: SIGTERM to the pid started (rootlesskit, which the script execs),
# SIGKILL if it is still running 30 s later; then wait for it.
stop() {
	kill $DPID 2>/dev/null || true
	timeout 30 sh -c "while [ -e /proc/$DPID ] && ! grep -q '^State:[[:space:]]*Z' /proc/$DPID/status; do sleep 0.1; done" ||
		{ echo "dockerd-rootless.sh ignored SIGTERM"; kill -9 $DPID 2>/dev/null || true; }
	wait $DPID || echo "dockerd-rootless.sh: exit status $?"
	DPID=
}
trap '[ -z "$DPID" ] || stop; cat $D/dockerd.log >&2' EXIT
export DOCKER_HOST=unix://$D/docker.sock DOCKER_CONFIG=$D/cli
DK="timeout 60 docker"
up=
for i in $(seq 150); do
	[ -e $D/docker.sock ] && timeout 5 docker version >/dev/null 2>&1 && { up=1; break; }
	grep -q '^State:[[:space:]]*[^Z]' /proc/$DPID/status 2>/dev/null || break
	sleep 0.2
done
[ -n "$up" ] || { echo "dockerd did not come up"; exit 1; }
# RootlessKit runs slirp4netns as argv[0] "slirp4netns".
SP=$(pgrep -P $DPID -x slirp4netns || true)
[ -n "$SP" ] || { echo "rootlesskit runs no slirp4netns"; exit 1; }
echo "slirp4netns exe: $(readlink /proc/$SP/exe)"
echo "slirp4netns argv: $(tr '\0' ' ' < /proc/$SP/cmdline)"
$DK import $D/rootfs.tar netns-run-e2e/probe:latest >/dev/null
$DK run -d --name web -p 127.0.0.1:$PORT:80 netns-run-e2e/probe /probe serve-tcp 80 >/dev/null
for i in $(seq 50); do $DK logs web 2>/dev/null | grep -q ready && break; sleep 0.1; done
echo "published: $($P tcp -timeout 5s 127.0.0.1:$PORT hello | tr '\n' ' ')"
if [ $PD = slirp4netns ]; then
	API=$(tr '\0' '\n' < /proc/$SP/cmdline | sed -n '/^--api-socket$/{n;p;}')
	echo "hostfwd: $($P unix $API '{"execute":"list_hostfwd"}')"
fi
$DK run --rm netns-run-e2e/probe /probe tcp -timeout 5s 198.51.100.2:7777 docker-out
echo
$DK rm -f web >/dev/null
$DK rmi netns-run-e2e/probe >/dev/null
stop
sleep 0.3
[ -e /proc/$SP ] && ! grep -q '^State:[[:space:]]*Z' /proc/$SP/status && echo "its slirp4netns outlived dockerd"
pgrep -fa "$D/" && echo "a process of dockerd outlived it"
true
`, d, script, bin, portDriver, port, probe)
	p := startCmd(t, cmdOpts{timeout: 3*time.Minute + 10*time.Second}, "/bin/sh", "-c", sh)
	self, ok := readStat(p.pid())
	if !ok {
		t.Fatal("the test's shell vanished")
	}
	// Whatever outlives the script (all of rootless Docker if the script
	// was killed at its deadline) is killed, also when wait fails the test.
	t.Cleanup(func() {
		if left := killLeftovers(self.startTime); len(left) > 0 {
			t.Errorf("with port driver %s: left behind (killed now):\n\t%s", portDriver, strings.Join(left, "\n\t"))
		}
	})
	r := p.wait(3 * time.Minute)
	wantExit(t, r, 0, "dockerd-rootless.sh with --net=slirp4netns, port driver "+portDriver)
	wants := []string{"slirp4netns exe: " + exe + "\n", "--mtu 65520", "published: from ", "hello", "from 198.51.100.1:", "docker-out"}
	if portDriver == "slirp4netns" {
		// RootlessKit asked slirp4netns's API for the published port.
		wants = append(wants, fmt.Sprintf(`"host_port":%d`, port))
	}
	for _, want := range wants {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("with port driver %s: missing %q in:\n%s", portDriver, want, r)
		}
	}
	for _, bad := range []string{"ignored SIGTERM", "outlived"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("with port driver %s: %s:\n%s", portDriver, bad, r)
		}
	}
}

// removeAllForced removes dir, also when a killed dockerd left a
// directory of it without search permission (exec-root/libnetwork is
// 0600).
func removeAllForced(dir string) error {
	if os.RemoveAll(dir) == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// killLeftovers kills (SIGKILL, by pid) the processes re-parented to us
// that started at or after startTime, round after round (a killed one's
// children come to us in turn), and describes them.
func killLeftovers(startTime uint64) []string {
	var left []string
	seen := map[int]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for quiet := 0; quiet < 5 && time.Now().Before(deadline); {
		orphans := orphansSince(startTime)
		if len(orphans) == 0 {
			quiet++
		} else {
			quiet = 0
		}
		for _, o := range orphans {
			if !seen[o.pid] {
				seen[o.pid] = true
				left = append(left, o.String())
			}
			_ = syscall.Kill(o.pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return left
}
