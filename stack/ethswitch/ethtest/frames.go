package ethtest

import (
	"encoding/binary"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// EthFrame is an Ethernet frame of payload.
func EthFrame(dst, src net.HardwareAddr, et tcpip.NetworkProtocolNumber, payload []byte) []byte {
	f := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(src), DstAddr: tcpip.LinkAddress(dst), Type: et})
	copy(f[header.EthernetMinimumSize:], payload)
	return f
}

// IPv4Packet is an IPv4 packet of payload, with its header checksum.
func IPv4Packet(src, dst netip.Addr, proto tcpip.TransportProtocolNumber, payload []byte) []byte {
	p := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(p)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(p)),
		TTL:         64,
		Protocol:    uint8(proto),
		SrcAddr:     tcpip.AddrFrom4(src.As4()),
		DstAddr:     tcpip.AddrFrom4(dst.As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(p[header.IPv4MinimumSize:], payload)
	return p
}

// UDPPacket is an IPv4 packet of a UDP datagram, with checksums.
func UDPPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	u := make([]byte, header.UDPMinimumSize+len(payload))
	udp := header.UDP(u)
	udp.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	s, d := tcpip.AddrFrom4(src.As4()), tcpip.AddrFrom4(dst.As4())
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, s, d, uint16(len(u)))
	xsum = checksum.Checksum(payload, xsum)
	udp.SetChecksum(^udp.CalculateChecksum(xsum))
	return IPv4Packet(src, dst, header.UDPProtocolNumber, u)
}

// UDPFrame is UDPPacket in an Ethernet frame.
func UDPFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return EthFrame(dstMAC, srcMAC, header.IPv4ProtocolNumber, UDPPacket(src, dst, sport, dport, payload))
}

// ARPFrame is an ARP request or reply (op) over Ethernet.
func ARPFrame(dst net.HardwareAddr, op header.ARPOp, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	a := make([]byte, header.ARPSize)
	h := header.ARP(a)
	h.SetIPv4OverEthernet()
	h.SetOp(op)
	copy(h.HardwareAddressSender(), sha)
	copy(h.ProtocolAddressSender(), spa.AsSlice())
	copy(h.HardwareAddressTarget(), tha)
	copy(h.ProtocolAddressTarget(), tpa.AsSlice())
	return EthFrame(dst, sha, header.ARPProtocolNumber, a)
}

// EchoFrame is an ICMPv4 echo request in an Ethernet frame.
func EchoFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	b := make([]byte, header.ICMPv4MinimumSize+len(data))
	icmp := header.ICMPv4(b)
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(id)
	icmp.SetSequence(seq)
	copy(icmp.Payload(), data)
	icmp.SetChecksum(^checksum.Checksum(b, 0))
	return EthFrame(dstMAC, srcMAC, header.IPv4ProtocolNumber, IPv4Packet(src, dst, header.ICMPv4ProtocolNumber, b))
}

// IPv6Frame is an IPv6 packet of payload (next header nh) in an Ethernet frame.
func IPv6Frame(dst, src net.HardwareAddr, srcIP, dstIP netip.Addr, nh uint8, payload []byte) []byte {
	p := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(p).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(len(payload)),
		TransportProtocol: tcpip.TransportProtocolNumber(nh),
		HopLimit:          255,
		SrcAddr:           tcpip.AddrFrom16(srcIP.As16()),
		DstAddr:           tcpip.AddrFrom16(dstIP.As16()),
	})
	copy(p[header.IPv6MinimumSize:], payload)
	return EthFrame(dst, src, header.IPv6ProtocolNumber, p)
}

// EtherType is a frame's EtherType, or 0 for a runt.
func EtherType(f []byte) tcpip.NetworkProtocolNumber {
	if len(f) < 14 {
		return 0
	}
	return tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(f[12:14]))
}
