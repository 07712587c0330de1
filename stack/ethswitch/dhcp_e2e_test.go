package ethswitch

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/dhcp"
)

// udhcpcScript prints the variables busybox udhcpc passes to its script.
const udhcpcScript = `#!/bin/sh
echo "event=$1 ip=$ip subnet=$subnet mask=$mask router=$router dns=$dns domain=$domain lease=$lease mtu=$mtu serverid=$serverid broadcast=$broadcast" >> "$OUT"
`

// TestTAPUdhcpc: busybox udhcpc on a TAP attached to the switch gets the
// member's address, router, DNS and MTU from stack/dhcp through the switch's
// DHCP hook.
func TestTAPUdhcpc(t *testing.T) {
	needNS(t)
	srv := dhcp.New(dhcp.Config{
		ServerIP:  gwIP,
		Router:    gwIP,
		Subnet:    netip.MustParsePrefix("10.9.0.0/24"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.9.0.3"), netip.MustParseAddr("10.9.0.1")},
		Domain:    "seg.test",
		LeaseTime: 10 * time.Minute,
		MTU:       65520,
	})
	for _, broadcast := range []bool{false, true} {
		name := "unicast"
		if broadcast {
			name = "broadcast"
		}
		t.Run(name, func(t *testing.T) {
			s := newSwitch(t, Options{
				MTU:       65520,
				GatewayIP: gwIP,
				DHCP: func(req []byte, m Member) ([]byte, bool) {
					return srv.Respond(req, m.MAC, m.IP)
				},
			})
			gatewayStack(t, s, true)
			ns := kernelMember(t, s, 7, 1500, false) // the lease sets the MTU

			dir := t.TempDir()
			script := filepath.Join(dir, "script")
			out := filepath.Join(dir, "out")
			if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("OUT", out)
			args := []string{"udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", script}
			if broadcast {
				args = append(args, "-B")
			}
			log := ns.mustRun(t, "busybox", args...)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v; udhcpc said:\n%s", err, log)
			}
			var bound string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "event=bound ") {
					bound = l
				}
			}
			if bound == "" {
				t.Fatalf("no bound event:\n%s\nudhcpc said:\n%s", b, log)
			}
			t.Log(bound)
			for _, want := range []string{"ip=10.9.0.7 ", "subnet=255.255.255.0 ", "mask=24 ", "router=10.9.0.1 ", "dns=10.9.0.3 10.9.0.1 ", "domain=seg.test ", "lease=600 ", "mtu=65520 ", "serverid=10.9.0.1 ", "broadcast=10.9.0.255"} {
				if !strings.Contains(bound+" ", want) {
					t.Errorf("bound event lacks %q", want)
				}
			}
			// Configure what was leased and use it: the gateway answers.
			ns.mustRun(t, "ip", "addr", "add", "10.9.0.7/24", "dev", "eth0")
			if err := ns.ping("-c", "1", "-W", "3", gwIP.String()); err != nil {
				t.Fatal(err)
			}
			noSpoofDrops(t, s)
		})
	}
}
