package e2e

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/miekg/dns"
)

// requestRates are a member's DNS queries and DHCP messages a second;
// the bursts are twice as many.
type requestRates struct{ dns, dhcp int }

// TestRateLimitDNSAndDHCP: a member that floods the segment's DNS and DHCP
// (raw frames from its own addresses, so the switch lets them in) has the
// queries past its burst dropped and counted under their own reasons in
// stats, while another member's query and lease are answered at once and
// the flooder is answered again once it has slowed down: at the defaults
// (200 queries a second, 10 DHCP messages), then at daemon.json's.
func TestRateLimitDNSAndDHCP(t *testing.T) {
	requireLauncher(t)
	t.Run("defaults", func(t *testing.T) { floodDNSAndDHCP(t, newUser(t), requestRates{200, 10}) })
	t.Run("settings", func(t *testing.T) {
		u := newUser(t)
		writeDaemonSettings(t, u, `{"member-limits": {"dns-per-second": 50, "dhcp-per-second": 3}}`)
		floodDNSAndDHCP(t, u, requestRates{50, 3})
	})
}

// floodDNSAndDHCP is TestRateLimitDNSAndDHCP for u's daemon, whose
// members' rates are want.
func floodDNSAndDHCP(t *testing.T, u *user, want requestRates) {
	dnsRate, dnsBurst := float64(want.dns), 2*want.dns
	dhcpRate, dhcpBurst := float64(want.dhcp), 2*want.dhcp
	var (
		subnet    = netip.MustParsePrefix("10.87.0.0/24")
		gw        = netip.MustParseAddr("10.87.0.1")
		flooder   = netip.MustParseAddr("10.87.0.2")
		bystander = netip.MustParseAddr("10.87.0.3")
	)
	u.ok("network", "create", "--subnet", subnet.String(), "--gateway", gw.String(), "ratenet")
	t.Cleanup(func() { u.nr("network", "rm", "ratenet") })
	u.ok("run", "-d", "--name", "flooder", "--network", "ratenet", "--ip", flooder.String(), "--", probe, "sleep", "120s")
	u.ok("run", "-d", "--name", "bystander", "--network", "ratenet", "--ip", bystander.String(), "--", probe, "sleep", "120s")
	own := memberMAC(flooder)
	before := dropsOf(t, u, "flooder")

	// 1000 queries for a member's name, in 10 bursts of 100 (a burst fits
	// the gateway's socket buffers, so the resolver sees every query).
	q, err := new(dns.Msg).SetQuestion("bystander.", dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	query := hex.EncodeToString(ethFrame(memberMAC(gw), own, 0x0800, udp4From(flooder, 40000, gw, 53, q)))
	const bursts, each = 10, 100
	start := time.Now()
	r := u.nr("exec", "flooder", "--", "/bin/sh", "-c",
		fmt.Sprintf(`for i in $(seq %d); do "$0" rawsend -count %d eth0 %s >/dev/null || exit 1; done`, bursts, each, query), probe)
	wantExit(t, r, 0, "the flooder's DNS queries")
	took := time.Since(start)
	// The bystander's query is answered while the flooder is over its rate.
	if r := u.ok("exec", "bystander", "--", probe, "resolve", "-timeout", "2s", "flooder"); r.stdout != flooder.String()+"\n" {
		t.Errorf("the bystander resolving flooder during the flood: %q", r.stdout)
	}
	const sent = bursts * each
	// Every query past the burst and what refilled while they were sent
	// is dropped: at most sent-burst, and at least that less the refill
	// and a margin for queries the gateway's stack lost on the way.
	most := uint64(sent - dnsBurst)
	least := atLeast(most, took.Seconds()*dnsRate+100)
	dropped := waitDrops(t, u, "flooder", "dns over rate", before, least)
	t.Logf("%d of %d queries sent in %v dropped over the rate", dropped, sent, took.Round(time.Millisecond))
	if dropped < least || dropped > most {
		t.Errorf("the flooder's %q drops: %d of %d sent in %v; want %d to %d", "dns over rate", dropped, sent, took, least, most)
	}
	if table := u.ok("stats", "--no-stream", "flooder").stdout; !strings.Contains(table, "dns over rate") {
		t.Errorf("stats does not show the DNS drops:\n%s", table)
	}

	// 100 DHCP discovers of its own: the burst is answered, the rest
	// dropped.
	disc, err := dhcpv4.NewDiscovery(own)
	if err != nil {
		t.Fatal(err)
	}
	discover := hex.EncodeToString(ethFrame(broadcast, own, 0x0800, udp4From(netip.IPv4Unspecified(), 68, netip.AddrFrom4([4]byte{255, 255, 255, 255}), 67, disc.ToBytes())))
	const discovers = 100
	start = time.Now()
	wantExit(t, u.nr("exec", "flooder", "--", probe, "rawsend", "-count", fmt.Sprint(discovers), "eth0", discover), 0, "the flooder's DHCP discovers")
	most = uint64(discovers - dhcpBurst)
	least = atLeast(most, time.Since(start).Seconds()*dhcpRate+1)
	if got := waitDrops(t, u, "flooder", "dhcp over rate", before, least); got < least || got > most {
		t.Errorf("the flooder's %q drops: %d of %d discovers; want %d to %d", "dhcp over rate", got, discovers, least, most)
	}
	// The bystander's lease is its own bucket's.
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := u.ok("exec", "bystander", "--", "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-s", script); !strings.Contains(r.stdout, "lease ip="+bystander.String()) {
		t.Errorf("the bystander's lease while the flooder is over its DHCP rate:\n%s", r)
	}

	// Slowed down, the flooder is answered again: its buckets refill.
	time.Sleep(2 * time.Second)
	if r := u.ok("exec", "flooder", "--", probe, "resolve", "-timeout", "2s", "bystander"); r.stdout != bystander.String()+"\n" {
		t.Errorf("the flooder resolving bystander after its flood: %q", r.stdout)
	}
}

// atLeast is most less slack, or 1 when the slack is more than that.
func atLeast(most uint64, slack float64) uint64 {
	if float64(most) <= slack+1 {
		return 1
	}
	return most - uint64(slack)
}

// waitDrops waits (a few seconds at most) for name's drops for reason to
// grow by at least least since before, and returns how much they grew.
func waitDrops(t *testing.T, u *user, name, reason string, before map[string]uint64, least uint64) uint64 {
	t.Helper()
	var got uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = dropsOf(t, u, name)[reason] - before[reason]; got >= least {
			time.Sleep(300 * time.Millisecond) // the last ones counted, too
			return dropsOf(t, u, name)[reason] - before[reason]
		}
	}
	return got
}
