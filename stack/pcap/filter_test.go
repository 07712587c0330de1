package pcap

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	macA = net.HardwareAddr{0x02, 0x42, 198, 51, 100, 2}
	macB = net.HardwareAddr{0x02, 0x42, 198, 51, 100, 3}
	ipA  = netip.MustParseAddr("198.51.100.2")
	ipB  = netip.MustParseAddr("198.51.100.3")

	bcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// tcpFrame is a TCP SYN from A to B (checksums left out: the filter does
// not look at them).
func tcpFrame(sport, dport uint16) []byte {
	seg := make([]byte, header.TCPMinimumSize)
	header.TCP(seg).Encode(&header.TCPFields{SrcPort: sport, DstPort: dport, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagSyn})
	return ethtest.EthFrame(macB, macA, header.IPv4ProtocolNumber, ethtest.IPv4Packet(ipA, ipB, header.TCPProtocolNumber, seg))
}

func TestFilterMatches(t *testing.T) {
	udp := ethtest.UDPFrame(macB, macA, ipA, ipB, 5353, 53, []byte("q"))
	tcp := tcpFrame(40000, 80)
	arp := ethtest.ARPFrame(bcast, header.ARPRequest, macA, ipA, net.HardwareAddr(make([]byte, 6)), ipB)
	icmp := ethtest.EchoFrame(macB, macA, ipA, ipB, 1, 1, nil)
	for _, c := range []struct {
		expr string
		want [4]bool // udp, tcp, arp, icmp
	}{
		{"udp", [4]bool{true, false, false, false}},
		{"tcp", [4]bool{false, true, false, false}},
		{"arp", [4]bool{false, false, true, false}},
		{"icmp", [4]bool{false, false, false, true}},
		{"icmp6", [4]bool{}},
		{"ip", [4]bool{true, true, false, true}},
		{"ip6", [4]bool{}},
		{"host 198.51.100.3", [4]bool{true, true, true, true}},
		{"src host 198.51.100.3", [4]bool{}},
		{"dst host 198.51.100.3", [4]bool{true, true, true, true}},
		{"host 203.0.113.1", [4]bool{}},
		{"net 198.51.100.0/24", [4]bool{true, true, true, true}},
		{"port 53", [4]bool{true, false, false, false}},
		{"dst port 80", [4]bool{false, true, false, false}},
		{"src port 80", [4]bool{}},
		{"tcp or udp", [4]bool{true, true, false, false}},
		{"tcp || udp", [4]bool{true, true, false, false}},
		{"not arp and not icmp", [4]bool{true, true, false, false}},
		{"!(tcp or udp)", [4]bool{false, false, true, true}},
		{"udp or tcp and port 53", [4]bool{true, false, false, false}},
		{"(udp or tcp) && port 80", [4]bool{false, true, false, false}},
		{"ether src 02:42:c6:33:64:02", [4]bool{true, true, true, true}},
		{"ether dst 02:42:c6:33:64:02", [4]bool{}},
		{"ether host 02:42:c6:33:64:03", [4]bool{true, true, false, true}},
		{"  ", [4]bool{true, true, true, true}},
	} {
		f, err := ParseFilter(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		for i, frame := range [][]byte{udp, tcp, arp, icmp} {
			if got := f.Match(frame); got != c.want[i] {
				t.Errorf("%q on %s = %v, want %v", c.expr, []string{"udp", "tcp", "arp", "icmp"}[i], got, c.want[i])
			}
		}
	}
}

func TestFilterShortFrames(t *testing.T) {
	f, err := ParseFilter("not tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, frame := range [][]byte{nil, {1, 2, 3}, make([]byte, 14), append(make([]byte, 12), 0x08, 0x00, 0x45)} {
		f.Match(frame) // must not panic
	}
	if !f.Match(nil) {
		t.Error("not tcp should match a runt")
	}
}

func TestFilterErrors(t *testing.T) {
	for expr, want := range map[string]string{
		"tcp and":               "ends too soon",
		"portrange 1-2":         `unknown word "portrange"`,
		"host example.com":      "names are not resolved",
		"port 70000":            "0 to 65535",
		"net 10.0.0.1":          "prefix",
		"(tcp":                  "missing )",
		"tcp udp":               `unexpected "udp"`,
		"src tcp":               `after src or dst`,
		"ether host 1:2:3":      "six hex bytes",
		"ether proto 1":         "after ether",
		"udp[8:2] = 53":         "unknown word",
		"vlan and tcp":          `unknown word "vlan"`,
		"tcp and (udp or)":      `unexpected ")"`,
		"greater 100":           `unknown word "greater"`,
		"ether host zz:2:3:4:5": "six hex bytes",
	} {
		_, err := ParseFilter(expr)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the filter understands") {
			t.Errorf("%q: error %v, want one with %q and the grammar", expr, err, want)
		}
	}
}
