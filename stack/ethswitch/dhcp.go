package ethswitch

import (
	"encoding/binary"
	"net"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// bootpMinLen is the fixed BOOTP part of a DHCP message plus the magic
// cookie; shorter replies are not DHCP.
const bootpMinLen = 240

// serveDHCP passes a member's DHCP request to the hook and writes the reply,
// framed, to that member only.
func (s *Switch) serveDHCP(p *port, req []byte) {
	m := Member{MAC: net.HardwareAddr(append([]byte(nil), p.mac[:]...)), IP: netip.AddrFrom4(p.ip), FD: -1}
	reply, ok := s.opts.DHCP(req, m)
	if !ok || len(reply) < bootpMinLen {
		return
	}
	frame := dhcpFrame(s.tbl.Load().gwMAC, s.gwIP, p.mac, reply)
	if len(frame) > s.frameMax {
		p.drop(dropOversize, frame)
		return
	}
	if t := s.taps.Load(); t != nil {
		t.tap(frame)
	}
	p.write(frame)
}

// dhcpFrame wraps a DHCP reply in Ethernet/IPv4/UDP, addressed as RFC 2131
// §4.1 says for a server on the client's link: broadcast when the client
// asked for it (or for a NAK), else to ciaddr, else to yiaddr at the
// client's MAC.
func dhcpFrame(gwMAC [6]byte, gwIP [4]byte, mac [6]byte, reply []byte) []byte {
	bcast := [4]byte{255, 255, 255, 255}
	dstIP := bcast
	if binary.BigEndian.Uint16(reply[10:12])&0x8000 == 0 {
		if ci := [4]byte(reply[12:16]); ci != [4]byte{} {
			dstIP = ci
		} else if yi := [4]byte(reply[16:20]); yi != [4]byte{} {
			dstIP = yi
		}
	}
	dstMAC := mac
	if dstIP == bcast {
		dstMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	const hdrs = ethHdrLen + header.IPv4MinimumSize + header.UDPMinimumSize
	frame := make([]byte, hdrs+len(reply))
	header.Ethernet(frame).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(gwMAC[:]),
		DstAddr: tcpip.LinkAddress(dstMAC[:]),
		Type:    header.IPv4ProtocolNumber,
	})
	src, dst := tcpip.AddrFrom4(gwIP), tcpip.AddrFrom4(dstIP)
	udpLen := uint16(header.UDPMinimumSize + len(reply))
	ip := header.IPv4(frame[ethHdrLen:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: header.IPv4MinimumSize + udpLen,
		TTL:         64,
		Protocol:    uint8(header.UDPProtocolNumber),
		SrcAddr:     src,
		DstAddr:     dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	udp := header.UDP(frame[ethHdrLen+header.IPv4MinimumSize:])
	udp.Encode(&header.UDPFields{SrcPort: 67, DstPort: 68, Length: udpLen})
	copy(frame[hdrs:], reply)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, udpLen)
	xsum = checksum.Checksum(reply, xsum)
	c := ^udp.CalculateChecksum(xsum)
	if c == 0 {
		c = 0xffff
	}
	udp.SetChecksum(c)
	return frame
}
