package e2e

import (
	"flag"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

var soakCycles = flag.Int("soak-cycles", 200, "TestSoak's sandbox start/stop cycles (make soak: 10000)")

// TestSoak: sandboxes started and stopped cycle after cycle, on a private
// network (the supervisor's own stack) and on a shared one (the daemon's),
// each with a published port and an exec, leave nothing behind: the
// daemon's descriptors, goroutines and memory, the address leases, the
// host's listeners and the runtime directory's files are what they were
// after the warm-up. A member that stays keeps the same daemon up
// throughout. `make test` runs 200 cycles, `make soak` 10,000.
func TestSoak(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	metrics := freeLoopbackPort(t)
	writeDaemonSettings(t, u, fmt.Sprintf(`{"metrics-addr": "127.0.0.1:%d"}`, metrics))
	u.ok("network", "create", "--subnet", "10.93.0.0/24", "soaknet")
	t.Cleanup(func() { u.nr("network", "rm", "soaknet") })
	u.ok("run", "-d", "--name", "soak-anchor", "--network", "soaknet", "--", probe, "sleep", "24h")
	daemon := findDaemon(t, u)

	cycle := func(i int) {
		port := fmt.Sprint(18500 + i%50)
		if i%2 == 0 {
			r := u.nr("run", "--rm", "--network", "private", "-p", port+":80", "--", probe, "exit", "0")
			wantExit(t, r, 0, fmt.Sprintf("cycle %d on the private network", i))
			return
		}
		name := fmt.Sprintf("soak-%d", i)
		u.ok("run", "-d", "--name", name, "--network", "soaknet", "-p", port+":80", "--", probe, "sleep", "60s")
		u.ok("exec", name, "--", probe, "exit", "0")
		u.ok("rm", "-f", name)
	}
	snapshot := func() soakState {
		fams := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics))
		goroutines, _ := gaugeOf(fams, "go_goroutines")
		return soakState{
			fds: countFDs(daemon), goroutines: int(goroutines), rssMiB: rssKB(daemon) >> 10,
			leases:    strings.Count(u.ok("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "soaknet").stdout, " "),
			listeners: hostListeners(t), runtimeFiles: countFiles(t, u.rt),
		}
	}
	const warmUp = 10
	for i := range warmUp {
		cycle(i)
	}
	before := snapshot()
	for i := warmUp; i < warmUp+*soakCycles; i++ {
		cycle(i)
		if t.Failed() {
			t.Fatalf("stopped at cycle %d", i)
		}
	}
	after := snapshot()
	t.Logf("%d cycles: before %+v, after %+v", *soakCycles, before, after)
	if after.fds > before.fds || after.goroutines > before.goroutines+2 || after.leases != before.leases ||
		after.listeners != before.listeners || after.runtimeFiles != before.runtimeFiles || after.rssMiB > before.rssMiB+8 {
		t.Errorf("after %d cycles something grew: before %+v, after %+v", *soakCycles, before, after)
	}
	if daemon != findDaemon(t, u) {
		t.Error("the daemon was replaced during the soak")
	}
}

type soakState struct {
	fds, goroutines, rssMiB, leases, listeners, runtimeFiles int
}

// gaugeOf is the value of a metric family's first gauge.
func gaugeOf(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	ms := fams[name].GetMetric()
	if len(ms) == 0 {
		return 0, false
	}
	return ms[0].GetGauge().GetValue(), true
}

// hostListeners counts the TCP and UDP sockets bound in the test's host
// namespace (ss, from iproute2).
func hostListeners(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ss", "-tulnH").Output()
	if err != nil {
		t.Fatalf("ss -tulnH: %v", err)
	}
	return len(nonEmptyLines(string(out)))
}

// countFiles counts the files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
