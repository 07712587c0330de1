// Package pcap captures a segment's Ethernet frames into pcap files that
// tcpdump, tshark and Wireshark read (LINKTYPE_ETHERNET; format.go), through a small filter language of its own (Filter).
// A Capture takes frames from the switch's tap without ever blocking it, and
// writes them from a goroutine of its own.
package pcap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// DefaultSnaplen is tcpdump's: whole frames of any MTU used here.
const DefaultSnaplen = 262144

// queueLen bounds the frames waiting for the writer; a burst beyond it is
// dropped from the capture (and counted), never held against the switch.
const queueLen = 4096

// Options configure a Capture.
type Options struct {
	Snaplen int     // bytes kept of each frame; 0 means DefaultSnaplen
	Count   int     // stop after this many frames; 0: until the context ends
	Filter  *Filter // nil: every frame
	// Match, if set, must also pass (the member a capture is limited to).
	Match func(frame []byte) bool
}

// Result says what a capture did.
type Result struct {
	Written uint64 // frames written
	Dropped uint64 // frames that passed the filter but found the queue full
}

type record struct {
	ts   time.Time
	orig int
	data []byte
}

// Capture is one running capture.
type Capture struct {
	opts    Options
	buf     *bufio.Writer
	q       chan record
	stopped atomic.Bool
	dropped atomic.Uint64
}

// New writes the file header to w and returns the capture; hand Tap to the
// switch, then Run.
func New(w io.Writer, opts Options) (*Capture, error) {
	if opts.Snaplen == 0 {
		opts.Snaplen = DefaultSnaplen
	}
	if opts.Snaplen < 14 || opts.Snaplen > DefaultSnaplen {
		return nil, fmt.Errorf("snaplen %d: want 14 to %d bytes", opts.Snaplen, DefaultSnaplen)
	}
	if opts.Count < 0 {
		return nil, fmt.Errorf("count %d: want 0 (no limit) or more", opts.Count)
	}
	buf := bufio.NewWriterSize(w, 64<<10)
	if err := writeFileHeader(buf, uint32(opts.Snaplen)); err != nil {
		return nil, fmt.Errorf("write the pcap header: %w", err)
	}
	if err := buf.Flush(); err != nil {
		return nil, fmt.Errorf("write the pcap header: %w", err)
	}
	return &Capture{opts: opts, buf: buf, q: make(chan record, queueLen)}, nil
}

// Tap takes one frame (valid only during the call): if it passes, a copy
// of its first Snaplen bytes is queued for the writer.
func (c *Capture) Tap(frame []byte) {
	if c.stopped.Load() || !c.opts.Filter.Match(frame) || (c.opts.Match != nil && !c.opts.Match(frame)) {
		return
	}
	r := record{ts: time.Now(), orig: len(frame), data: append([]byte(nil), frame[:min(len(frame), c.opts.Snaplen)]...)}
	select {
	case c.q <- r:
	default:
		c.dropped.Add(1)
	}
}

// Run writes queued frames until ctx ends, Count frames are written, or a
// write fails. Frames still queued when ctx ends are written first.
func (c *Capture) Run(ctx context.Context) (Result, error) {
	defer c.stopped.Store(true)
	var res Result
	full := func() bool { return c.opts.Count > 0 && res.Written >= uint64(c.opts.Count) }
	write := func(r record) error {
		if err := writeRecord(c.buf, r.ts, r.data, r.orig); err != nil {
			return fmt.Errorf("write the capture: %w", err)
		}
		res.Written++
		// A reader at the other end of a pipe sees each burst at once.
		if len(c.q) == 0 || full() {
			if err := c.buf.Flush(); err != nil {
				return fmt.Errorf("write the capture: %w", err)
			}
		}
		return nil
	}
	for !full() {
		select {
		case r := <-c.q:
			if err := write(r); err != nil {
				res.Dropped = c.dropped.Load()
				return res, err
			}
		case <-ctx.Done():
			c.stopped.Store(true)
			for !full() && len(c.q) > 0 { // Run is the only reader
				if err := write(<-c.q); err != nil {
					res.Dropped = c.dropped.Load()
					return res, err
				}
			}
			res.Dropped = c.dropped.Load()
			return res, nil
		}
	}
	res.Dropped = c.dropped.Load()
	return res, nil
}
