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
	"path/filepath"
	"runtime/debug"

	"github.com/netns-run/netns-run/internal/agent"
	"github.com/netns-run/netns-run/internal/slirp"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/spf13/cobra"
)

func main() {
	dropOneProcessorEnv()
	switch {
	case agent.IsChild():
		agent.Main()
	case slirp.IsTAPHelper():
		slirp.TAPHelperMain()
	case filepath.Base(os.Args[0]) == "slirp4netns":
		// Rootless Podman and RootlessKit run "slirp4netns": a link of
		// that name to this binary answers as slirp4netns 1.2.0.
		os.Exit(slirp.Main(os.Args[1:], os.Stdout, os.Stderr, version()))
	case len(os.Args) > 1 && os.Args[1] == "slirp4netns":
		os.Exit(slirp.Main(os.Args[2:], os.Stdout, os.Stderr, version()))
	}
	takeDetachedID()
	os.Exit(execute(os.Args[1:]))
}

// version is the module version, or the commit it was built from.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return info.Main.Version + " (" + s.Value[:12] + ")"
		}
	}
	return info.Main.Version
}

// exitError carries the status a command asks netns-run to exit with.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func execute(args []string) int {
	var root *cobra.Command
	if isDetachedChild() {
		root = newDetachedRootCommand()
	} else {
		root = newRootCommand()
	}
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
