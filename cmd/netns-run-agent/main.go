//go:build linux

// Command netns-run-agent is pid 1 of every sandbox: the sandbox agent
// (internal/agent) alone, without the network stack, the daemon and the
// CLI that netns-run holds. netns-run starts it in the new namespaces when
// it lies beside the netns-run binary (make build and make install put it
// there), and runs itself as the agent when it does not. A binary a fifth
// of netns-run's size maps fewer pages per sandbox and starts with less
// to initialise (docs/ARCHITECTURE.md, Measured facts: The agent's own
// binary).
package main

import (
	"fmt"
	"os"

	"github.com/netns-run/netns-run/internal/agent"
)

func main() {
	if !agent.IsChild() {
		fmt.Fprintln(os.Stderr, "netns-run-agent: netns-run starts this inside each sandbox; run netns-run instead")
		os.Exit(2)
	}
	agent.Main()
}
