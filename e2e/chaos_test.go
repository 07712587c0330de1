package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"
)

var killSeed = flag.Uint64("kill-seed", 0, "TestKillAtRandom's seed (0: from the clock)")

// TestKillAtRandom: SIGKILL of a member's supervisor, of the network
// daemon, or of both, at random moments (one of them while another member
// is starting), round after round. After each round the state is whole
// again: every running record has a live agent, no address is held by two
// running members, a killed member's published port is free, the
// survivors' ports answer, and a new member starts. The seed is printed;
// -kill-seed N replays a run (make e2e E2E_RUN=TestKillAtRandom
// E2E_ARGS=-kill-seed=N).
func TestKillAtRandom(t *testing.T) {
	requireLauncher(t)
	seed := *killSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-kill-seed=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	u := newUser(t)
	const rounds = 6
	for round := range rounds {
		port := 18400 + round
		victim, survivor := fmt.Sprintf("chaos-v%d", round), fmt.Sprintf("chaos-s%d", round)
		u.ok("run", "-d", "--name", victim, "--network", "bridge", "-p", fmt.Sprintf("%d:80", port), "--", probe, "serve-tcp", "80")
		u.ok("run", "-d", "--name", survivor, "--network", "bridge", "-p", fmt.Sprintf("%d:80", port+100), "--", probe, "serve-tcp", "80")
		waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port))

		// A member starting while the kill lands: it either runs or is
		// gone, never half there.
		starting := make(chan result, 1)
		late := fmt.Sprintf("chaos-l%d", round)
		go func() {
			starting <- u.nr("run", "-d", "--name", late, "--network", "bridge", "--", probe, "sleep", "60s")
		}()
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		kind := []string{"supervisor", "daemon", "both"}[rng.IntN(3)]
		if kind != "daemon" {
			agent := int(u.inspect(victim)["State"].(map[string]any)["Pid"].(float64))
			st, ok := readStat(agent)
			if !ok {
				t.Fatalf("round %d: the agent %d of %s is gone", round, agent, victim)
			}
			syscall.Kill(st.ppid, syscall.SIGKILL)
		}
		if kind != "supervisor" {
			syscall.Kill(findDaemon(t, u), syscall.SIGKILL)
		}
		r := <-starting
		t.Logf("round %d: SIGKILL to %s (%s); a member starting meanwhile: status %d", round, map[string]string{"supervisor": "the supervisor", "daemon": "the daemon", "both": "the supervisor and the daemon"}[kind], victim, r.code)

		if kind != "daemon" {
			waitPortFree(t, port)
		}
		waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port+100)) // the survivor, re-attached if the daemon died
		u.ok("run", "--rm", "--network", "bridge", "--", probe, "exit", "0")
		checkRecordsWhole(t, u, round)
	}
}

// waitPortFree waits until nothing holds the host's TCP port.
func waitPortFree(t *testing.T, port int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if l, err := net.Listen("tcp", fmt.Sprintf(":%d", port)); err == nil {
			l.Close()
			return
		}
	}
	t.Fatalf("port %d is still held 10 s after its member's supervisor was killed", port)
}

// checkRecordsWhole: every record ps shows as running has a live agent,
// and no two running members hold one address.
func checkRecordsWhole(t *testing.T, u *user, round int) {
	t.Helper()
	ids := nonEmptyLines(u.ok("ps", "-q").stdout)
	if len(ids) == 0 {
		return
	}
	var views []struct {
		Name  string
		State struct {
			Running bool
			Pid     int
		}
		NetworkSettings struct{ IPAddress string }
	}
	out := u.ok(append([]string{"inspect"}, ids...)...).stdout
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatalf("round %d: inspect: %v", round, err)
	}
	holder := map[string]string{}
	for _, v := range views {
		if !v.State.Running {
			continue
		}
		if _, ok := readStat(v.State.Pid); !ok {
			t.Errorf("round %d: %s is listed as running, but its agent %d is gone", round, v.Name, v.State.Pid)
		}
		if other, ok := holder[v.NetworkSettings.IPAddress]; ok && v.NetworkSettings.IPAddress != "" {
			t.Errorf("round %d: %s and %s both hold %s", round, other, v.Name, v.NetworkSettings.IPAddress)
		}
		holder[v.NetworkSettings.IPAddress] = v.Name
	}
}
