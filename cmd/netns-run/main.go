//go:build linux

// Command netns-run runs a command in an unprivileged sandbox whose network
// is a gVisor netstack in userland.
//
// netns-run is Linux-only: it is made of Linux's user, network and mount
// namespaces, TAP devices and packet sockets, so it builds for Linux alone
// (a build for any other system stops at linux_only.go with
// "undefined: netns_run_builds_only_for_linux").
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/netns-run/netns-run/internal/agent"
	"github.com/netns-run/netns-run/internal/wire"
)

func main() {
	if agent.IsChild() {
		agent.Main()
	}
	os.Exit(execute(os.Args[1:]))
}

// exitError carries the status a command asks netns-run to exit with.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func execute(args []string) int {
	root := newRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "netns-run: %v\n", err)
	return wire.ExitOwnError
}
