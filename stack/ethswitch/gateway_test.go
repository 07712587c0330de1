package ethswitch

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/netns-run/netns-run/stack/ethswitch/ethtest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/qdisc/fifo"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const gwNIC tcpip.NICID = 1

// gatewayStack attaches a gVisor stack configured as stack/gateway.go does
// (promiscuous, spoofing, fifo qdisc) to the switch, with gwIP/24.
func gatewayStack(t testing.TB, s *Switch, qdisc bool) *stack.Stack {
	t.Helper()
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	ep := s.GatewayEndpoint()
	var opts stack.NICOptions
	if qdisc {
		opts.QDisc = fifo.New(ep, 1, 1000)
	}
	if err := st.CreateNICWithOptions(gwNIC, ep, opts); err != nil {
		t.Fatalf("CreateNIC: %s", err)
	}
	st.SetPromiscuousMode(gwNIC, true)
	st.SetSpoofing(gwNIC, true)
	pa := tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(gwIP.As4()), PrefixLen: 24},
	}
	if err := st.AddProtocolAddress(gwNIC, pa, stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %s", err)
	}
	st.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: gwNIC},
		{Destination: header.IPv6EmptySubnet, NIC: gwNIC},
	})
	t.Cleanup(func() {
		st.Close()
		st.Wait()
	})
	return st
}

func isARP(op header.ARPOp, spa netip.Addr) func([]byte) bool {
	return func(f []byte) bool {
		if ethtest.EtherType(f) != header.ARPProtocolNumber || len(f) < 14+header.ARPSize {
			return false
		}
		a := header.ARP(f[14:])
		return a.Op() == op && bytes.Equal(a.ProtocolAddressSender(), spa.AsSlice())
	}
}

func isIPv4(proto tcpip.TransportProtocolNumber, src netip.Addr) func([]byte) bool {
	return func(f []byte) bool {
		if ethtest.EtherType(f) != header.IPv4ProtocolNumber {
			return false
		}
		ip := header.IPv4(f[14:])
		return ip.IsValid(len(f)-14) && ip.TransportProtocol() == proto && ip.SourceAddress() == tcpip.AddrFrom4(src.As4())
	}
}

func TestGatewayAnswersARPAndPing(t *testing.T) {
	for _, qdisc := range []bool{true, false} {
		name := "fifo"
		if !qdisc {
			name = "noqdisc"
		}
		t.Run(name, func(t *testing.T) {
			s := newSwitch(t, Options{})
			gatewayStack(t, s, qdisc)
			a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)

			req := ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, a.IP, make(net.HardwareAddr, 6), gwIP)
			a.Send(req)
			f := a.RecvMatch(2*time.Second, isARP(header.ARPReply, gwIP))
			if f == nil {
				t.Fatal("no ARP reply from the gateway")
			}
			arpReply := header.ARP(f[14:])
			if eth := header.Ethernet(f); eth.SourceAddress() != tcpip.LinkAddress(gwMAC) || eth.DestinationAddress() != tcpip.LinkAddress(a.MAC) {
				t.Fatalf("ARP reply frame %s -> %s", eth.SourceAddress(), eth.DestinationAddress())
			}
			if !bytes.Equal(arpReply.HardwareAddressSender(), gwMAC) || !bytes.Equal(arpReply.HardwareAddressTarget(), a.MAC) || !bytes.Equal(arpReply.ProtocolAddressTarget(), a.IP.AsSlice()) {
				t.Fatalf("ARP reply %x", f[14:])
			}
			b.Expect(req)          // the broadcast request reached B,
			b.ExpectNothing(quiet) // the unicast reply did not

			data := payload(1000)
			a.Send(ethtest.EchoFrame(gwMAC, a.MAC, a.IP, gwIP, 77, 1, data))
			f = a.RecvMatch(2*time.Second, isIPv4(header.ICMPv4ProtocolNumber, gwIP))
			if f == nil {
				t.Fatal("no echo reply")
			}
			ip := header.IPv4(f[14:])
			icmpReply := header.ICMPv4(ip.Payload())
			if ip.DestinationAddress() != tcpip.AddrFrom4(a.IP.As4()) || icmpReply.Type() != header.ICMPv4EchoReply || icmpReply.Ident() != 77 || !bytes.Equal(icmpReply.Payload(), data) {
				t.Fatalf("bad echo reply %x", f[14:min(len(f), 80)])
			}
			if eth := header.Ethernet(f); eth.SourceAddress() != tcpip.LinkAddress(gwMAC) || eth.DestinationAddress() != tcpip.LinkAddress(a.MAC) {
				t.Fatalf("echo reply frame %s -> %s", eth.SourceAddress(), eth.DestinationAddress())
			}
		})
	}
}

// The gateway reaches a member it does not know: its ARP request is
// broadcast to all members, the answer comes back, and the datagram goes to
// that member only.
func TestGatewayToMember(t *testing.T) {
	s := newSwitch(t, Options{})
	st := gatewayStack(t, s, true)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)

	conn, err := gonet.DialUDP(st,
		&tcpip.FullAddress{NIC: gwNIC, Addr: tcpip.AddrFrom4(gwIP.As4()), Port: 5000},
		&tcpip.FullAddress{NIC: gwNIC, Addr: tcpip.AddrFrom4(b.IP.As4()), Port: 6000}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := []byte("hello member")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	whoHas := func(f []byte) bool {
		return isARP(header.ARPRequest, gwIP)(f) && bytes.Equal(header.ARP(f[14:]).ProtocolAddressTarget(), b.IP.AsSlice())
	}
	if a.RecvMatch(2*time.Second, whoHas) == nil {
		t.Fatal("A did not see the gateway's ARP broadcast")
	}
	if b.RecvMatch(2*time.Second, whoHas) == nil {
		t.Fatal("B did not see the gateway's ARP broadcast")
	}
	b.Send(ethtest.ARPFrame(gwMAC, header.ARPReply, b.MAC, b.IP, gwMAC, gwIP))
	f := b.RecvMatch(2*time.Second, isIPv4(header.UDPProtocolNumber, gwIP))
	if f == nil {
		t.Fatal("B got no datagram")
	}
	if u := header.UDP(header.IPv4(f[14:]).Payload()); u.DestinationPort() != 6000 || !bytes.Equal(u.Payload(), msg) {
		t.Fatalf("bad datagram %x", f)
	}
	if a.RecvMatch(quiet, isIPv4(header.UDPProtocolNumber, gwIP)) != nil {
		t.Fatal("A got B's datagram")
	}
	if st := s.Stats(); st.GatewayIn == 0 || st.GatewayOut == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// With spoofing on, gVisor answers ARP for any address; the switch must not
// let it claim a member's.
func TestGatewayCannotClaimMemberIP(t *testing.T) {
	s := newSwitch(t, Options{})
	gatewayStack(t, s, true)
	a, b := addSockMember(t, s, 2), addSockMember(t, s, 3)
	req := ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, a.IP, make(net.HardwareAddr, 6), b.IP)
	a.Send(req)
	b.Expect(req)
	waitDrop(t, s, DropGatewayClaim, 1)
	if f := a.RecvMatch(quiet, isARP(header.ARPReply, b.IP)); f != nil {
		t.Fatalf("A got a reply claiming B's address: %x", f)
	}
	// Addresses that are no member's are still answered (e.g. a resolver
	// address served by the gateway).
	other := netip.MustParseAddr("10.9.0.53")
	a.Send(ethtest.ARPFrame(bcastMAC, header.ARPRequest, a.MAC, a.IP, make(net.HardwareAddr, 6), other))
	if a.RecvMatch(2*time.Second, isARP(header.ARPReply, other)) == nil {
		t.Fatal("no ARP reply for a non-member address")
	}
}
