//go:build linux

package main

import (
	"os"
	"testing"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/runner"
)

func TestOneProcessorWhenIdle(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        runner.Options
		userSet     string
		want        string
		userGODEBUG string // "" unset
		wantGODEBUG string
	}{
		{"shared network", runner.Options{Network: "bridge"}, "", "1", "", "profstackdepth=0"},
		{"no network", runner.Options{Network: runner.None}, "", "1", "", "profstackdepth=0"},
		{"private network hosts a stack", runner.Options{Network: runner.Private}, "", "", "", ""},
		{"-T relays", runner.Options{Network: "bridge", HostForwards: []forward.HostForward{{SandboxPort: 80, HostPort: 80}}}, "", "", "", ""},
		{"the user's GOMAXPROCS stays", runner.Options{Network: "bridge"}, "3", "3", "", ""},
		{"the user's GODEBUG stays", runner.Options{Network: "bridge"}, "", "1", "gctrace=1", "gctrace=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tc.userSet)
			t.Setenv("GODEBUG", tc.userGODEBUG)
			t.Setenv(oneProcessorEnv, "")
			if tc.userSet == "" {
				os.Unsetenv("GOMAXPROCS")
			}
			if tc.userGODEBUG == "" {
				os.Unsetenv("GODEBUG")
			}
			os.Unsetenv(oneProcessorEnv)
			oneProcessorWhenIdle(tc.opts)
			if got := os.Getenv("GOMAXPROCS"); got != tc.want {
				t.Fatalf("GOMAXPROCS %q, want %q", got, tc.want)
			}
			if got := os.Getenv("GODEBUG"); got != tc.wantGODEBUG {
				t.Fatalf("GODEBUG %q, want %q", got, tc.wantGODEBUG)
			}
			dropOneProcessorEnv()
			_, marked := os.LookupEnv(oneProcessorEnv)
			if got := os.Getenv("GOMAXPROCS"); got != tc.userSet || marked {
				t.Errorf("after the drop: GOMAXPROCS %q (want %q), marker left %v", got, tc.userSet, marked)
			}
			if got, set := os.LookupEnv("GODEBUG"); got != tc.userGODEBUG || set != (tc.userGODEBUG != "") {
				t.Errorf("after the drop: GODEBUG %q (set %v), want %q", got, set, tc.userGODEBUG)
			}
		})
	}
}
