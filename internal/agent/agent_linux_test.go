package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

func TestWithoutMarker(t *testing.T) {
	env := []string{"A=1", wire.AgentEnv + "=1", "B=2"}
	got := withoutMarker(env)
	if len(got) != 2 || got[0] != "A=1" || got[1] != "B=2" {
		t.Fatalf("withoutMarker = %q", got)
	}
	if len(env) != 3 || env[1] != wire.AgentEnv+"=1" {
		t.Fatalf("withoutMarker changed its input: %q", env)
	}
}

// TestLookPathIn covers the exec's own PATH lookup.
func TestLookPathIn(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o644)
	cases := []struct {
		name, path, dir string
		want            string
		code            int
	}{
		{"tool", "/nonexistent:" + dir, "", exe, 0},
		{"tool", ".:relative", dir, "", wire.ExitNotFound},
		{"plain", dir, "", "", wire.ExitNotFound},
		{plain, "", "", "", wire.ExitCannotInvoke},
		{"./tool", "", dir, "./tool", 0},
		{"./tool", "", "/", "", wire.ExitNotFound},
		{dir, "", "", "", wire.ExitCannotInvoke},
	}
	for _, c := range cases {
		got, err := lookPathIn(c.name, c.path, c.dir)
		code := 0
		if err != nil {
			code = lookPathStatus(err)
		}
		if got != c.want || code != c.code {
			t.Errorf("lookPathIn(%q, %q, %q) = %q, %v (status %d); want %q, status %d", c.name, c.path, c.dir, got, err, code, c.want, c.code)
		}
	}
}

func TestSameBuild(t *testing.T) {
	if err := sameBuild("v1 abc", "v1 abc"); err != nil {
		t.Errorf("one build: %v", err)
	}
	err := sameBuild("v1 abc", "v1 def+changes")
	if err == nil || !strings.Contains(err.Error(), "make install") || !strings.Contains(err.Error(), `"v1 def+changes"`) {
		t.Errorf("two builds: %v; want the agent's build named and what to do", err)
	}
}

// TestReapEndsAtStop: once the command has ended, reap returns as soon as
// the agent stops, not at its next look for execs (which used to keep
// every sandbox up 10 ms after its command). stop itself is not called:
// its kill(-1) is only for a namespace's init.
func TestReapEndsAtStop(t *testing.T) {
	defer func(p time.Duration) { execPoll = p }(execPoll)
	execPoll = time.Minute
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	a := &agent{mainPid: cmd.Process.Pid, byPid: map[int]*agentExec{}, byID: map[uint64]*agentExec{}, stopped: make(chan struct{})}
	mainDone, reaped := make(chan unix.WaitStatus, 1), make(chan struct{})
	go a.reap(mainDone, reaped)
	if ws := <-mainDone; ws.ExitStatus() != 0 {
		t.Fatalf("true exited %d", ws.ExitStatus())
	}
	time.Sleep(50 * time.Millisecond) // reap is waiting for execs now
	a.mu.Lock()
	a.stopping = true
	close(a.stopped)
	a.mu.Unlock()
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("reap still waiting 5 s after the stop")
	}
}
