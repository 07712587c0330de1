package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// A hostile member's frames, made with gVisor's header types and written
// by `probe rawsend` through a packet socket in its sandbox.
var (
	hostileNet = netip.MustParsePrefix("10.89.0.0/24")
	hostileGW  = netip.MustParseAddr("10.89.0.1")
	victimIP   = netip.MustParseAddr("10.89.0.2")
	peerIP     = netip.MustParseAddr("10.89.0.3")
	attackerIP = netip.MustParseAddr("10.89.0.4")
	broadcast  = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// memberMAC is the MAC IPAM gives an address: 02:42 and its four bytes.
func memberMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x02, 0x42, a[0], a[1], a[2], a[3]}
}

func ethFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(src), DstAddr: tcpip.LinkAddress(dst), Type: tcpip.NetworkProtocolNumber(etherType),
	})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

// udp4 is an IPv4 UDP datagram from src to dst:port with valid checksums.
func udp4(src, dst netip.Addr, port uint16, payload string) []byte {
	return udp4From(src, 40000, dst, port, []byte(payload))
}

func udp4From(src netip.Addr, sport uint16, dst netip.Addr, port uint16, payload []byte) []byte {
	total := header.IPv4MinimumSize + header.UDPMinimumSize + len(payload)
	b := make([]byte, total)
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(total), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(src.As4()), DstAddr: tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(b[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: port, Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(u.Payload(), payload)
	sum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), u.Length())
	u.SetChecksum(^u.CalculateChecksum(checksum.Checksum(payload, sum)))
	return b
}

// arp is an ARP packet: op 1 (request) or 2 (reply) saying that spa is at sha.
func arp(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, header.ARPSize)
	a := header.ARP(b)
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPOp(op))
	s, t := spa.As4(), tpa.As4()
	copy(a.HardwareAddressSender(), sha)
	copy(a.ProtocolAddressSender(), s[:])
	copy(a.HardwareAddressTarget(), tha)
	copy(a.ProtocolAddressTarget(), t[:])
	return b
}

// TestHostileFrames: a member writes forged frames onto its segment (as
// another member's MAC or address, as the gateway, from broadcast,
// multicast and unspecified sources; ARP claims for others' addresses;
// VLAN tags; oversize, truncated and garbage headers; DHCP discovers for a
// thousand client ids; a broadcast flood) while another member
// keeps talking to the victim. Every forged frame is dropped and counted
// under its reason in the attacker's stats, nothing reaches the victim,
// the honest traffic goes on, the next member still gets its address,
// and the daemon's log does not grow a line per drop.
func TestHostileFrames(t *testing.T) {
	requireLauncher(t)
	u := newUser(t)
	u.ok("network", "create", "--subnet", hostileNet.String(), "--gateway", hostileGW.String(), "hostile")
	t.Cleanup(func() { u.nr("network", "rm", "hostile") })
	u.ok("run", "-d", "--name", "victim", "--network", "hostile", "--ip", victimIP.String(), "--", "/bin/sh", "-c",
		probe+" serve-tcp 80 >/dev/null & exec "+probe+" log-udp 9999")
	u.ok("run", "-d", "--name", "peer", "--network", "hostile", "--ip", peerIP.String(), "--", probe, "sleep", "120s")
	u.ok("run", "-d", "--name", "attacker", "--network", "hostile", "--ip", attackerIP.String(), "--", probe, "sleep", "120s")

	own, vMAC, pMAC := memberMAC(attackerIP), memberMAC(victimIP), memberMAC(peerIP)
	toVictim := func(src netip.Addr, what string) []byte { return udp4(src, victimIP, 9999, "FORGED-"+what) }
	vlan := append([]byte{0x00, 0x01, 0x08, 0x00}, toVictim(attackerIP, "vlan")...) // VID 1, then IPv4
	garbage := toVictim(attackerIP, "garbage")
	garbage[0] = 0x35 // IP version 3
	truncated := toVictim(attackerIP, "truncated")[:12]
	// One byte more than the segment's MTU (65520) allows, padded by
	// rawsend (an argument cannot hold it in hex).
	const oversize = 14 + 65521
	attacks := []struct {
		reason string
		frame  []byte
	}{
		{"spoofed source MAC", ethFrame(vMAC, pMAC, 0x0800, toVictim(peerIP, "peer-mac"))},
		{"spoofed source MAC", ethFrame(vMAC, broadcast, 0x0800, toVictim(attackerIP, "broadcast-mac"))},
		{"spoofed source MAC", ethFrame(vMAC, net.HardwareAddr{0x01, 0x00, 0x5e, 0, 0, 1}, 0x0800, toVictim(attackerIP, "multicast-mac"))},
		{"spoofed source IPv4", ethFrame(vMAC, own, 0x0800, toVictim(peerIP, "peer-ip"))},
		{"spoofed source IPv4", ethFrame(vMAC, own, 0x0800, toVictim(hostileGW, "gateway-ip"))},
		{"spoofed source IPv4", ethFrame(vMAC, own, 0x0800, toVictim(netip.IPv4Unspecified(), "zero-ip"))},
		{"spoofed source IPv4", ethFrame(broadcast, own, 0x0800, udp4(peerIP, netip.MustParseAddr("10.89.0.255"), 9999, "FORGED-bcast"))},
		{"spoofed ARP sender", ethFrame(broadcast, own, 0x0806, arp(1, own, victimIP, net.HardwareAddr{0, 0, 0, 0, 0, 0}, victimIP))},
		{"spoofed ARP sender", ethFrame(pMAC, own, 0x0806, arp(2, own, victimIP, pMAC, peerIP))},
		{"spoofed ARP sender", ethFrame(pMAC, own, 0x0806, arp(2, own, hostileGW, pMAC, peerIP))},
		{"unsupported ethertype", ethFrame(vMAC, own, 0x8100, vlan)},
		{"malformed header", ethFrame(vMAC, own, 0x0800, garbage)},
		{"malformed header", ethFrame(vMAC, own, 0x0800, truncated)},
	}
	const each = 200
	var hexFrames []string
	want := map[string]uint64{}
	for _, a := range attacks {
		hexFrames = append(hexFrames, hex.EncodeToString(a.frame))
		want[a.reason] += each
	}
	hexFrames = append(hexFrames, fmt.Sprintf("%s/%d", hex.EncodeToString(ethFrame(vMAC, own, 0x0800, toVictim(attackerIP, "oversize"))), oversize))
	want["frame larger than MTU"] += each
	// DHCP starvation: discovers for a thousand other client hardware
	// addresses and ids. A port's lease is its member's: nothing is
	// handed out for them.
	var starve []string
	for i := range 1000 {
		chaddr := net.HardwareAddr{0x02, 0x99, 0, 0, byte(i >> 8), byte(i)}
		d, err := dhcpv4.NewDiscovery(chaddr, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, chaddr...))))
		if err != nil {
			t.Fatal(err)
		}
		starve = append(starve, hex.EncodeToString(ethFrame(broadcast, own, 0x0800, udp4From(netip.IPv4Unspecified(), 68, netip.AddrFrom4([4]byte{255, 255, 255, 255}), 67, d.ToBytes()))))
	}

	// The victim listens (run -d returns once its command started).
	u.ok("exec", "peer", "--", "/bin/sh", "-c", fmt.Sprintf("for i in $(seq 50); do %s tcp -timeout 2s %s:80 up >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1", probe, victimIP))
	// The honest conversation goes on while the attack runs.
	honest := make(chan result, 1)
	go func() {
		honest <- u.nr("exec", "peer", "--", "/bin/sh", "-c",
			fmt.Sprintf("ok=0; for i in $(seq 20); do %s tcp -timeout 2s %s:80 hi-$i >/dev/null && ok=$((ok+1)); sleep 0.05; done; echo honest $ok", probe, victimIP))
	}()
	before := dropsOf(t, u, "attacker")
	// The oversize frame needs an MTU above the segment's on the
	// attacker's side: its own eth0, which it may change.
	r := u.nr(append([]string{"exec", "attacker", "--", "/bin/sh", "-c",
		`ip link set eth0 mtu 65521 && exec "$0" "$@"`, probe, "rawsend", "-count", fmt.Sprint(each), "-burst", "50", "eth0"}, hexFrames...)...)
	wantExit(t, r, 0, "the attacker's frames")
	for batch := range slices.Chunk(starve, 250) { // an exec's message holds at most 256 KiB
		r = u.nr(append([]string{"exec", "attacker", "--", probe, "rawsend", "-burst", "50", "eth0"}, batch...)...)
		wantExit(t, r, 0, "the attacker's DHCP discovers")
	}
	h := <-honest
	if !strings.Contains(h.stdout, "honest 20") {
		t.Errorf("the other member's connections to the victim during the attack:\n%s", h)
	}
	after := dropsOf(t, u, "attacker")
	for reason, n := range want {
		if got := after[reason] - before[reason]; got < n {
			t.Errorf("drops for %q: %d; want at least the %d frames sent", reason, got, n)
		}
	}
	time.Sleep(200 * time.Millisecond) // anything that got through has arrived
	if logs := u.ok("logs", "victim").stdout; strings.Contains(logs, "FORGED") {
		t.Errorf("forged frames reached the victim:\n%s", logs)
	}
	// The peer's view of the victim and the gateway is its own: the ARP
	// claims changed nothing.
	r = u.nr("exec", "peer", "--", "/bin/sh", "-c", fmt.Sprintf("%s tcp -timeout 3s %s:80 after; echo; %s tcp -timeout 3s %s:7777 world", probe, victimIP, probe, worldIP))
	if !strings.Contains(r.stdout, "from "+peerIP.String()+":") || !strings.Contains(r.stdout, "\nafter") || !strings.Contains(r.stdout, "\nworld") {
		t.Errorf("after the ARP claims the peer must still reach the victim and, through the gateway, the world:\n%s", r)
	}
	// A broadcast flood from the attacker's own address: past its burst
	// the switch drops it, and the victim sees a bounded share.
	flood := hex.EncodeToString(ethFrame(broadcast, own, 0x0800, udp4(attackerIP, netip.MustParseAddr("10.89.0.255"), 9999, "BCAST")))
	beforeFlood := dropsOf(t, u, "attacker")["broadcast or multicast over rate"]
	// Paced (2 ms every 50 frames) so that the frames reach the switch
	// rather than overflow the attacker's own interface queue, where the
	// kernel drops them before the switch could count them.
	wantExit(t, u.nr("exec", "attacker", "--", probe, "rawsend", "-count", "5000", "-burst", "50", "eth0", flood), 0, "the attacker's broadcast flood")
	time.Sleep(200 * time.Millisecond)
	// (The switch reads them over a while, and the rate refills
	// meanwhile: how many pass depends on the machine.)
	dropped := dropsOf(t, u, "attacker")["broadcast or multicast over rate"] - beforeFlood
	got := strings.Count(u.ok("logs", "victim").stdout, "BCAST")
	t.Logf("5000 broadcasts: %d dropped over the rate, %d reached the victim", dropped, got)
	if dropped == 0 || got == 0 || uint64(got)+dropped > 5000 {
		t.Errorf("5000 broadcasts at once: %d dropped over the rate, %d reached the victim; want some of each, never more than sent", dropped, got)
	}
	// The segment's addresses are all there for the next member.
	r = u.ok("run", "--rm", "--network", "hostile", "--", probe, "ifinfo")
	if !strings.Contains(r.stdout, "addr 10.89.0.5/24") {
		t.Errorf("a member joining after the DHCP starvation: want the next address, 10.89.0.5:\n%s", r)
	}
	// A drop is counted, not logged: at the default level the daemon's log
	// gains no line per frame.
	log, _ := os.ReadFile(filepath.Join(u.rt, "netns-run", "daemon.log"))
	if lines := strings.Count(string(log), "\n"); lines > 50 {
		t.Errorf("the daemon's log has %d lines after %d dropped frames; want no line per drop:\n%.2000s", lines, each*len(attacks), log)
	}
}

// dropsOf is the switch's drop counts by reason for a member.
func dropsOf(t *testing.T, u *user, name string) map[string]uint64 {
	t.Helper()
	var row struct {
		Counters *struct {
			Drops map[string]uint64 `json:"drops"`
		}
	}
	out := u.ok("stats", "--no-stream", "--format", "json", name).stdout
	if err := json.Unmarshal([]byte(out), &row); err != nil || row.Counters == nil {
		t.Fatalf("stats %s: %q: %v", name, out, err)
	}
	return row.Counters.Drops
}
