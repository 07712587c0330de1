package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPacketLink runs the data path over the veth + AF_PACKET link, the
// fallback for machines where /dev/net/tun is not usable: outbound TCP and
// UDP, and a published port reached by a world client that keeps its
// address.
func TestPacketLink(t *testing.T) {
	requireLauncher(t)
	packet := []string{"--link-mode", "packet"}
	t.Run("outbound tcp", func(t *testing.T) {
		r := runNR(t, sandboxed(packet, "tcp", whoamiAddr, "over-packet")...)
		wantExit(t, r, 0, "probe tcp over the packet link")
		if !regexp.MustCompile(`^from 198\.51\.100\.1:\d+\nover-packet$`).MatchString(r.stdout) {
			t.Fatalf("world whoami said %q; want the host's address and the echo", r.stdout)
		}
		wantLocal(t, r, sandboxIP)
	})
	t.Run("outbound udp", func(t *testing.T) {
		r := runNR(t, sandboxed(packet, "udp", whoamiAddr, "over-packet")...)
		wantExit(t, r, 0, "probe udp over the packet link")
		if !strings.HasSuffix(r.stdout, " over-packet\n") {
			t.Fatalf("world whoami said %q", r.stdout)
		}
	})
	t.Run("published tcp from the world", func(t *testing.T) {
		p := startNR(t, sandboxed(append(packet, "-p", "18150:80"), "serve-tcp", "80")...)
		p.waitReady()
		resp := worldDial(t, "tcp", hostIP+":18150", "hello", 10*time.Second)
		if resp.Error != "" || !regexp.MustCompile(`^from 198\.51\.100\.2:\d+\nhello$`).MatchString(resp.Reply) {
			t.Errorf("world client through the packet link: reply %q, error %q", resp.Reply, resp.Error)
		}
		p.stop()
	})
}

// TestBackgroundProcessesEnd checks that what the command leaves running in
// the sandbox ends with it, as a container's processes end with its main
// process: netns-run returns at once, and nothing holds its output.
func TestBackgroundProcessesEnd(t *testing.T) {
	requireLauncher(t)
	start := time.Now()
	r := runNR(t, "--", "/bin/sh", "-c", probe+" serve-tcp 80 & "+probe+" serve-udp 53 & sleep 0.2; exit 3")
	wantExit(t, r, 3, "a command that leaves two servers running")
	if r.pipesHeld {
		t.Errorf("a background process of the command outlived netns-run and holds its output")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("netns-run took %v to return after its command exited", d)
	}
}
