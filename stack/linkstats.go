package stack

import "gvisor.dev/gvisor/pkg/tcpip/header"

// LinkStats are the gateway's NIC counters on its one member's link (a
// private network), from the member's side: Rx is what the gateway
// wrote to it. Bytes include the Ethernet header. The echo requests past
// the gateway, which ping.go takes before the NIC to answer from the
// host, are not in Tx (their replies are in Rx), nor the SYNs the link
// watcher drops at the member's limits (syncheck.go); a GSO batch on a
// packet link counts as one packet.
type LinkStats struct {
	RxBytes, RxPackets, TxBytes, TxPackets uint64
	// Dropped are frames toward the member the link's queue had no room
	// for.
	Dropped uint64
}

// LinkStats reads the NIC's counters; zero before AttachFD.
func (g *Gateway) LinkStats() LinkStats {
	info, ok := g.s.NICInfo()[nicID]
	if !ok {
		return LinkStats{}
	}
	st := info.Stats
	rxPackets := st.Rx.Packets.Value()
	return LinkStats{
		// The NIC counts what it writes with the Ethernet header the
		// link added, and what it reads without the one the link took
		// off.
		RxBytes:   st.Tx.Bytes.Value(),
		RxPackets: st.Tx.Packets.Value(),
		TxBytes:   st.Rx.Bytes.Value() + rxPackets*header.EthernetMinimumSize,
		TxPackets: rxPackets,
		Dropped:   st.TxPacketsDroppedNoBufferSpace.Value(),
	}
}
