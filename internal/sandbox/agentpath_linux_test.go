package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAgentBeside: the agent's own binary beside netns-run is taken when
// it is an executable file; else netns-run is its own agent.
func TestAgentBeside(t *testing.T) {
	dir := t.TempDir()
	self := filepath.Join(dir, "netns-run")
	agent := filepath.Join(dir, AgentBinary)
	if got := agentBeside(self); got != self {
		t.Errorf("no agent binary: %s; want %s", got, self)
	}
	if err := os.WriteFile(agent, []byte("#!/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := agentBeside(self); got != self {
		t.Errorf("an agent binary without the x bit: %s; want %s", got, self)
	}
	if err := os.Chmod(agent, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := agentBeside(self); got != agent {
		t.Errorf("an executable agent binary: %s; want %s", got, agent)
	}
	other := filepath.Join(t.TempDir(), "netns-run")
	if err := os.Mkdir(filepath.Join(filepath.Dir(other), AgentBinary), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := agentBeside(other); got != other {
		t.Errorf("a directory by the agent's name: %s; want %s", got, other)
	}
}
