package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPcap: run --pcap on the private network writes eth0's packets in
// pcap format, which tcpdump reads back: the TCP exchange with the world
// host, the DNS query and answer, the ping and its reply.
func TestPcap(t *testing.T) {
	requireLauncher(t)
	tcpdump := requireTool(t, "tcpdump")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed (.ci/run installs it)")
	}
	file := filepath.Join(t.TempDir(), "eth0.pcap")
	r := runNR(t, "--pcap", file, "--", "/bin/sh", "-c",
		probe+" tcp -timeout 5s "+whoamiAddr+" captured; "+probe+" resolve -timeout 5s "+worldName+"; "+bb+" ping -c 1 -W 2 "+worldIP)
	wantExit(t, r, 0, "a run with --pcap")
	r = runCmd(t, cmdOpts{}, tcpdump, "-n", "-r", file)
	wantExit(t, r, 0, "tcpdump -r")
	for _, want := range []string{
		"IP 10.0.2.100.", " > " + whoamiAddr[:len(whoamiAddr)-5] + ".7777: Flags [S]", // the SYN to the world host
		"IP " + worldIP + ".7777 > 10.0.2.100.",
		"> 10.0.2.3.53: ", " A? " + worldName, // the DNS query, and its answer:
		"A " + worldIP,
		"ICMP echo request", "ICMP echo reply",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the capture lacks %q:\n%s", want, r.stdout)
		}
	}
	wantOwnError(t, runNR(t, "--network", "bridge", "--pcap", file, "--", probe, "exit", "0"), "--pcap on a shared network", "--pcap captures --network private's eth0")
}
