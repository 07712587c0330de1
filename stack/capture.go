package stack

import (
	"io"
	"log/slog"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/link/sniffer"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// A capture writes every frame the gateway receives and sends, as IP
// packets, in pcap format (LINKTYPE_RAW), with gVisor's sniffer: tcpdump,
// tshark and Wireshark read it (netns-run run --pcap, as pasta's --pcap).
// It costs nothing when off: the link is not wrapped at all.

// captureSnapLen keeps whole packets up to the largest MTU.
const captureSnapLen = 65536

func init() {
	// gVisor's sniffer also logs every packet through the log package
	// unless told not to; a capture only writes its file.
	sniffer.LogPackets.Store(0)
}

// captureLink wraps ep so that its frames go to w.
func captureLink(ep gstack.LinkEndpoint, w io.Writer, log *slog.Logger) (gstack.LinkEndpoint, error) {
	return sniffer.NewWithWriter(ep, &captureWriter{w: w, log: log}, captureSnapLen)
}

// captureWriter serializes the sniffer's writes (it writes from the
// receiving and the sending goroutine at once) and never fails them:
// gVisor's sniffer panics on a write error, and a full disk must not take
// the network down. After the first error the capture stops, said once.
// It leaves out ARP: a raw-IP capture cannot carry it, and tcpdump would
// show each as "unknown ip 0".
type captureWriter struct {
	mu       sync.Mutex
	w        io.Writer
	inRecord bool // past the file header, which is the first write
	failed   bool
	log      *slog.Logger
}

// pcapRecordHeader is the size of a record's header; the packet follows.
const pcapRecordHeader = 16

func (c *captureWriter) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed {
		return len(b), nil
	}
	if c.inRecord && (len(b) <= pcapRecordHeader || (b[pcapRecordHeader]>>4 != 4 && b[pcapRecordHeader]>>4 != 6)) {
		return len(b), nil
	}
	c.inRecord = true
	if _, err := c.w.Write(b); err != nil {
		c.failed = true
		c.log.Warn("packet capture stopped: cannot write it", "err", err)
	}
	return len(b), nil
}
