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
		name    string
		opts    runner.Options
		userSet string
		want    string
	}{
		{"shared network", runner.Options{Network: "bridge"}, "", "1"},
		{"no network", runner.Options{Network: runner.None}, "", "1"},
		{"private network hosts a stack", runner.Options{Network: runner.Private}, "", ""},
		{"-T relays", runner.Options{Network: "bridge", HostForwards: []forward.HostForward{{SandboxPort: 80, HostPort: 80}}}, "", ""},
		{"the user's GOMAXPROCS stays", runner.Options{Network: "bridge"}, "3", "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tc.userSet)
			t.Setenv(oneProcessorEnv, "")
			if tc.userSet == "" {
				os.Unsetenv("GOMAXPROCS")
			}
			os.Unsetenv(oneProcessorEnv)
			oneProcessorWhenIdle(tc.opts)
			if got := os.Getenv("GOMAXPROCS"); got != tc.want {
				t.Fatalf("GOMAXPROCS %q, want %q", got, tc.want)
			}
			dropOneProcessorEnv()
			_, marked := os.LookupEnv(oneProcessorEnv)
			if got := os.Getenv("GOMAXPROCS"); got != tc.userSet || marked {
				t.Errorf("after the drop: GOMAXPROCS %q (want %q), marker left %v", got, tc.userSet, marked)
			}
		})
	}
}
