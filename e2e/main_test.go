package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Addresses of the test network (see e2e/outerns) and of a sandbox on
// --network private (see the README).
const (
	hostIP     = "198.51.100.1"
	worldIP    = "198.51.100.2"
	whoamiAddr = "198.51.100.2:7777"
	worldName  = "world.e2e.test" // known to the world's DNS server only
	altDNSIP   = "198.51.100.3"   // the world's second DNS server
	altDNSName = "alt.e2e.test"   // known to the second only
	altDNSAddr = "198.51.100.33"
	hostIP6    = "2001:db8::1"
	worldIP6   = "2001:db8::2"

	sandboxIP  = "10.0.2.100"
	gatewayIP  = "10.0.2.2"
	resolverIP = "10.0.2.3"
	sandboxMAC = "02:42:0a:00:02:64"
	// --network private is dual stack: SLAAC's address from sandboxMAC.
	sandboxIP6  = "fd00::42:aff:fe00:264"
	resolverIP6 = "fd00::3"
	defaultMTU  = 65520
	exitOwnErr  = 125
	exitNoExec  = 126
	exitNoFound = 127
)

// Set by TestMain from the launcher's environment.
var (
	launched  bool   // NETNS_RUN_E2E=1: under the launcher
	binDir    string // NETNS_RUN_E2E_BIN_DIR
	netnsRun  string // binDir/netns-run
	probe     string // binDir/probe
	worldSock string // NETNS_RUN_E2E_WORLD_SOCK
	hostDNS   string // NETNS_RUN_E2E_HOST_DNS: the world DNS server named by the host's resolv.conf, if any
	// NETNS_RUN_E2E_INTRUDER_SOCK: the intruder, a second uid (only when
	// the launcher runs as root)
	intruderSock string
)

func TestMain(m *testing.M) {
	launched = os.Getenv("NETNS_RUN_E2E") == "1"
	if !launched {
		os.Exit(m.Run()) // every test skips: see requireLauncher
	}
	binDir = os.Getenv("NETNS_RUN_E2E_BIN_DIR")
	worldSock = os.Getenv("NETNS_RUN_E2E_WORLD_SOCK")
	hostDNS = os.Getenv("NETNS_RUN_E2E_HOST_DNS")
	intruderSock = os.Getenv("NETNS_RUN_E2E_INTRUDER_SOCK")
	if binDir == "" || worldSock == "" {
		fmt.Fprintln(os.Stderr, "e2e: NETNS_RUN_E2E_BIN_DIR and NETNS_RUN_E2E_WORLD_SOCK must be set by the launcher")
		os.Exit(2)
	}
	netnsRun = filepath.Join(binDir, "netns-run")
	probe = filepath.Join(binDir, "probe")
	// Orphans of the processes we start (e.g. a sandboxed command that
	// netns-run failed to reap or kill) are re-parented to us, where the
	// leftover checks can see them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: PR_SET_CHILD_SUBREAPER: %v\n", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// requireLauncher is the first call of every test: outside the launcher the
// test skips, saying how to run it.
func requireLauncher(t *testing.T) {
	t.Helper()
	if !launched {
		t.Skip("not under the e2e launcher (NETNS_RUN_E2E != 1): run `make e2e`")
	}
}
