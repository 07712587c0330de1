package pcap

import (
	"encoding/binary"
	"io"
	"time"
)

// The classic pcap file format with nanosecond timestamps, as libpcap
// writes it (pcap-savefile(5)): a 24-byte file header, then a 16-byte
// header before each frame. It is written here rather than by gopacket's
// pcapgo because pcapgo brings gopacket/layers, whose package init fills
// about 7 MB of lookup tables in every process of the binary (the agent
// and the supervisor of each sandbox too), whether or not anything is
// captured; the tests read these files back with pcapgo.
const (
	magicNanos       = 0xa1b23c4d
	linkTypeEthernet = 1 // LINKTYPE_ETHERNET
)

func writeFileHeader(w io.Writer, snaplen uint32) error {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], magicNanos)
	binary.LittleEndian.PutUint16(h[4:], 2) // version 2.4
	binary.LittleEndian.PutUint16(h[6:], 4)
	// h[8:16]: the time zone and accuracy fields, zero as everyone writes them.
	binary.LittleEndian.PutUint32(h[16:], snaplen)
	binary.LittleEndian.PutUint32(h[20:], linkTypeEthernet)
	_, err := w.Write(h[:])
	return err
}

// writeRecord writes one frame, data being its first bytes and orig its
// length on the wire.
func writeRecord(w io.Writer, ts time.Time, data []byte, orig int) error {
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(ts.Unix()))
	binary.LittleEndian.PutUint32(h[4:], uint32(ts.Nanosecond()))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[12:], uint32(orig))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(data)
	return err
}
