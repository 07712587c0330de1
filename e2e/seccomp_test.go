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

// taskRE is a line of the scripts' tasks function: one thread of the
// slirp4netns process and its seccomp mode (2: filter).
var taskRE = regexp.MustCompile(`(?m)^task (\d+) seccomp (\S+) nnp (\S+)$`)

// tasksScript prints, for the process $1, "task TID seccomp MODE nnp N"
// for each of its threads, from /proc/$1/task/*/status.
const tasksScript = `tasks() {
	for s in /proc/$1/task/*/status; do
		echo "task $(basename $(dirname $s)) seccomp $(awk '/^Seccomp:/{print $2}' $s) nnp $(awk '/^NoNewPrivs:/{print $2}' $s)"
	done
}
`

// wantFiltered checks that every thread listed in out (tasksScript) is in
// seccomp filter mode with no_new_privs, and that there are some.
func wantFiltered(t *testing.T, out, when string) {
	t.Helper()
	ms := taskRE.FindAllStringSubmatch(out, -1)
	if len(ms) < 2 {
		t.Errorf("%s: want the threads of the process, got %d:\n%s", when, len(ms), out)
		return
	}
	for _, m := range ms {
		if m[2] != "2" || m[3] != "1" {
			t.Errorf("%s: thread %s has Seccomp %s and NoNewPrivs %s, want 2 and 1", when, m[1], m[2], m[3])
		}
	}
	t.Logf("%s: %d threads, each in seccomp filter mode", when, len(ms))
}

// TestSlirp4netnsSeccomp: netns-run as slirp4netns with --enable-seccomp
// (as Podman passes it), with and without --enable-sandbox, against a
// namespace path: every thread of the process is in seccomp filter mode
// (/proc/PID/task/*/status "Seccomp: 2") once it is ready and after the
// traffic, and the traffic works under the filter: outbound TCP (also 8
// MiB of it) and UDP to the world, ping past the gateway (with busybox),
// outbound IPv6 TCP and ping with --enable-ipv6, DNS through the
// forwarder, TCP and UDP forwards added, listed and removed through the
// API socket, an API error, and a clean exit (on the exit fd; on SIGTERM)
// that removes the socket.
func TestSlirp4netnsSeccomp(t *testing.T) {
	requireLauncher(t)
	unshare := requireTool(t, "unshare")
	requireTool(t, "nsenter")
	busybox, _ := exec.LookPath("busybox") // for ping, when installed
	for _, tc := range []struct {
		name, flags, launch, end string
		port                     int
	}{
		// Podman's way: a mount namespace of its own, ended by the exit fd.
		{"with sandbox", "--enable-sandbox --enable-ipv6", "unshare --mount", "exec 5>&-", 18651},
		// Alone, ended by SIGTERM: the socket is removed by its path.
		{"without sandbox", "", "", "kill -TERM $SLIRP", 18655},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			script := fmt.Sprintf(`set -e
D=%[1]s NR=%[2]s P=%[3]s TP=%[6]d UP=%[7]d BB=%[10]s
%[8]s
unshare --net sleep 60 &
HOLDER=$!
for i in $(seq 50); do [ "$(readlink /proc/$HOLDER/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.05; done
touch $D/netns && mount --bind /proc/$HOLDER/ns/net $D/netns
mkfifo $D/ready $D/exit
%[5]s $NR slirp4netns --disable-host-loopback --mtu=65520 %[4]s --enable-seccomp -c -e 3 -r 4 --api-socket $D/api.sock --netns-type=path $D/netns tap0 3<$D/exit 4>$D/ready 2>$D/log &
SLIRP=$!
exec 5>$D/exit
echo "ready: $(head -c1 $D/ready)"
tasks $SLIRP > $D/tasks.ready
IN="nsenter --net=$D/netns"
$IN $P tcp -timeout 5s 198.51.100.2:7777 sc-tcp
echo
$IN $P udp -timeout 5s 198.51.100.2:7777 sc-udp
echo
$IN $P tcp -bytes 8388608 -timeout 20s 198.51.100.2:7777
if [ -n "$BB" ]; then $IN $BB ping -c 2 -W 2 -w 10 198.51.100.2 | grep -o '2 packets received' | sed 's/^/ping: /'; fi
case "%[4]s" in *--enable-ipv6*)
	$IN $P tcp -timeout 5s [2001:db8::2]:7777 sc-tcp6; echo
	[ -n "$BB" ] && $IN $BB ping -c 2 -W 2 -w 10 2001:db8::2 | grep -o '2 packets received' | sed 's/^/ping6: /';;
esac
echo "nameserver 10.0.2.3" > $D/resolv.conf && mount --bind $D/resolv.conf /etc/resolv.conf
echo "resolved: $($IN $P resolve -timeout 5s world.e2e.test)"
$IN $P serve-tcp 80 > $D/tcp.out 5>&- &
TCPSRV=$!
$IN $P serve-udp 53 > $D/udp.out 5>&- &
UDPSRV=$!
sleep 0.3
API="$P unix $D/api.sock"
echo "add tcp: $($API '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":'$TP',"guest_port":80}}')"
echo "add udp: $($API '{"execute":"add_hostfwd","arguments":{"proto":"udp","host_addr":"","host_port":'$UP',"guest_port":53}}')"
echo "again: $($API '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":'$TP',"guest_port":80}}')"
echo "list: $($API '{"execute":"list_hostfwd"}')"
echo "tcp forward: $($P tcp -timeout 5s 127.0.0.1:$TP via-fwd | tr '\n' ' ')"
echo "udp forward: $($P udp -timeout 5s 127.0.0.1:$UP via-fwd-udp)"
echo "remove: $($API '{"execute":"remove_hostfwd","arguments":{"id":1}}')"
$P tcp -timeout 2s 127.0.0.1:$TP gone >/dev/null 2>&1 && echo "a removed forward still answers"
tasks $SLIRP > $D/tasks.after
cat $D/tasks.ready | sed 's/^/ready /'
cat $D/tasks.after | sed 's/^/after /'
%[9]s
t0=$(date +%%s%%N)
wait $SLIRP && echo "exit status 0 after $(( ($(date +%%s%%N) - t0) / 1000000 )) ms"
[ -e $D/api.sock ] && echo "the API socket was left behind"
kill $TCPSRV $UDPSRV $HOLDER 2>/dev/null || true
cat $D/log >&2
`, d, netnsRun, probe, tc.flags, tc.launch, tc.port, tc.port+1, tasksScript, tc.end, busybox)
			r := runCmd(t, cmdOpts{timeout: time.Minute}, unshare, "--user", "--map-root-user", "--mount", "/bin/sh", "-c", script)
			wantExit(t, r, 0, "slirp4netns --enable-seccomp "+tc.flags)
			var ready, after strings.Builder
			for _, line := range strings.Split(r.stdout, "\n") {
				if s, ok := strings.CutPrefix(line, "ready "); ok {
					ready.WriteString(s + "\n")
				} else if s, ok := strings.CutPrefix(line, "after "); ok {
					after.WriteString(s + "\n")
				}
			}
			wantFiltered(t, ready.String(), "when ready")
			wantFiltered(t, after.String(), "after the traffic")
			for _, want := range []string{
				"ready: 1\n",
				"from 198.51.100.1:", // the world sees the host's address
				"sc-tcp",
				"sc-udp",
				"echoed 8388608 bytes",
				"resolved: 198.51.100.2\n",
				`add tcp: {"return":{"id":1}}`,
				`add udp: {"return":{"id":2}}`,
				`again: {"error":{"desc":"cannot publish`,
				`"entries":[{"id":1,"proto":"tcp"`,
				"tcp forward: from 10.0.2.2:",
				"via-fwd",
				"udp forward: from 10.0.2.2:",
				"via-fwd-udp",
				`remove: {"return":{}}`,
				"exit status 0 after",
			} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("missing %q in:\n%s", want, r)
				}
			}
			if busybox != "" && !strings.Contains(r.stdout, "ping: 2 packets received") {
				t.Errorf("ping past the gateway: want 2 replies:\n%s", r)
			}
			if strings.Contains(tc.flags, "--enable-ipv6") {
				if !strings.Contains(r.stdout, "from [2001:db8::1]:") || !strings.Contains(r.stdout, "sc-tcp6") {
					t.Errorf("outbound IPv6 TCP: missing its echo:\n%s", r)
				}
				if busybox != "" && !strings.Contains(r.stdout, "ping6: 2 packets received") {
					t.Errorf("IPv6 ping past the gateway: want 2 replies:\n%s", r)
				}
			}
			for _, bad := range []string{"still answers", "left behind"} {
				if strings.Contains(r.stdout, bad) {
					t.Errorf("%s:\n%s", bad, r)
				}
			}
			// The filter answers EPERM to what it refuses: nothing the
			// process does may have met it.
			if strings.Contains(r.stderr, "operation not permitted") || strings.Contains(r.stderr, "seccomp") {
				t.Errorf("the process's log names a refusal:\n%s", r.stderr)
			}
		})
	}
}

// TestRootlessKitSeccomp: the real RootlessKit with
// --slirp4netns-seccomp=true (and --slirp4netns-sandbox=true) on
// netns-run: its slirp4netns gets --enable-seccomp, every thread of it is
// in seccomp filter mode, and the child reaches the world and is reached
// through a port added with rootlessctl.
func TestRootlessKitSeccomp(t *testing.T) {
	requireLauncher(t)
	rootlesskit := requireTool(t, "rootlesskit")
	rootlessctl := requireTool(t, "rootlessctl")
	// A short directory: the API socket's path must fit a socket address.
	d, err := os.MkdirTemp("", "rks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	bin := filepath.Join(d, "slirp4netns")
	if err := os.Symlink(netnsRun, bin); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -e
D=%[1]s RK=%[2]s CTL=%[3]s BIN=%[4]s P=%[5]s
%[6]s
$RK --state-dir=$D/rk --net=slirp4netns --slirp4netns-binary=$BIN --slirp4netns-seccomp=true --slirp4netns-sandbox=true --disable-host-loopback --copy-up=/etc --port-driver=slirp4netns -- /bin/sh -c "$P tcp -timeout 5s 198.51.100.2:7777 rks-out; echo; exec $P serve-tcp 80" > $D/out 2>$D/err &
RKPID=$!
for i in $(seq 100); do grep -q ready $D/out 2>/dev/null && break; sleep 0.1; done
cat $D/out
grep -q ready $D/out || { echo "rootlesskit did not start its command"; cat $D/err >&2; kill $RKPID; exit 1; }
SLIRP=$(pgrep -f "^$BIN --mtu")
echo "cmdline: $(tr '\0' ' ' < /proc/$SLIRP/cmdline)"
tasks $SLIRP
timeout 10 $CTL --socket $D/rk/api.sock add-ports 127.0.0.1:18659:80/tcp
echo "forward: $($P tcp -timeout 5s 127.0.0.1:18659 via-rootlessctl | tr '\n' ' ')"
timeout 10 $CTL --socket $D/rk/api.sock remove-ports 1
kill $RKPID
wait $RKPID || true
cat $D/err >&2
`, d, rootlesskit, rootlessctl, bin, probe, tasksScript)
	r := runCmd(t, cmdOpts{timeout: time.Minute}, "/bin/sh", "-c", script)
	wantExit(t, r, 0, "rootlesskit --slirp4netns-seccomp=true")
	wantFiltered(t, r.stdout, "under rootlesskit")
	for _, want := range []string{"--enable-seccomp", "--enable-sandbox", "from 198.51.100.1:", "rks-out", "forward: from ", "via-rootlessctl"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r)
		}
	}
}
