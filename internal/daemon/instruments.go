package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/forward"
	"github.com/netns-run/netns-run/internal/netstore"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack/pcap"
	"github.com/netns-run/netns-run/stack/segment"
)

// The daemon's instruments: network capture (a capture session), the
// stats of every running segment (a one-shot Request) and the Prometheus
// endpoint (metrics.go).

// ErrNoDaemon: no network daemon runs, so no shared network does.
var ErrNoDaemon = errors.New("no network daemon runs")

// runningSegment returns the segment serving network (a name or id), or
// says why there is none.
func (s *Server) runningSegment(network string) (*segment.Segment, netstore.Network, error) {
	n, err := s.store.Get(network)
	if err != nil {
		return nil, n, err
	}
	if n.Options[netstore.OptParent] != "" {
		return nil, n, fmt.Errorf("network %s is a kernel macvlan on %s: its frames are the kernel's, capture on %s instead", n.Name, n.Options[netstore.OptParent], n.Options[netstore.OptParent])
	}
	s.mu.Lock()
	seg := s.segments[n.ID]
	s.mu.Unlock()
	if seg == nil {
		return nil, n, notRunning(n.Name)
	}
	return seg, n, nil
}

// notRunning says why a network has no frames or counters to show.
func notRunning(network string) error {
	return fmt.Errorf("network %s is not running: it has no member sandbox, and its segment runs only while it has one (start one with netns-run run -d --network %s ...)", network, network)
}

// capture serves a capture session: the frames of the segment, written to
// the descriptor that came with the Hello, until the count is reached or
// the client half-closes (or closes) the connection.
func (s *Server) capture(c *net.UnixConn, req wire.Capture, fds []int) {
	if len(fds) != 1 {
		wire.CloseFDs(fds)
		wire.Send(c, wire.CaptureStatus{Error: fmt.Sprintf("a capture comes with one descriptor, its output (got %d)", len(fds))})
		return
	}
	out := os.NewFile(uintptr(fds[0]), "capture output")
	defer out.Close()
	res, err := s.runCapture(c, req, out)
	st := wire.CaptureStatus{Written: res.Written, Dropped: res.Dropped}
	if err != nil && !errors.Is(err, syscall.EPIPE) { // a reader gone (tcpdump -c) is an end, not a failure
		st.Error = err.Error()
	}
	wire.Send(c, st)
}

func (s *Server) runCapture(c *net.UnixConn, req wire.Capture, out io.Writer) (pcap.Result, error) {
	seg, _, err := s.runningSegment(req.Network)
	if err != nil {
		return pcap.Result{}, err
	}
	filter, err := pcap.ParseFilter(req.Filter)
	if err != nil {
		return pcap.Result{}, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The client's half-close (or its end) arrives as the end of
		// the stream; nothing else comes on a capture session.
		for {
			var ignored wire.Request
			fds, err := wire.Recv(c, &ignored)
			wire.CloseFDs(fds)
			var bad *wire.DecodeError
			if err != nil && !errors.As(err, &bad) {
				cancel()
				return
			}
		}
	}()
	// The client hears "running" once the pcap header is written: the
	// member and the options were taken, the switch's tap is next.
	w := &onFirstWrite{w: out, first: func() { wire.Send(c, wire.CaptureStatus{Running: true}) }}
	return seg.Capture(ctx, w, req.Member, pcap.Options{Snaplen: req.Snaplen, Count: req.Count, Filter: filter})
}

// onFirstWrite calls first after its first successful write.
type onFirstWrite struct {
	w     io.Writer
	once  sync.Once
	first func()
}

func (o *onFirstWrite) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err == nil {
		o.once.Do(o.first)
	}
	return n, err
}

// stats answers a Stats request.
func (s *Server) stats() wire.Reply {
	return wire.Reply{Networks: s.networkStats()}
}

// runningNetwork is a network whose segment runs.
type runningNetwork struct {
	n   netstore.Network
	seg *segment.Segment
}

// runningNetworks are the networks with a segment serving members, by
// name.
func (s *Server) runningNetworks() []runningNetwork {
	s.mu.Lock()
	byID := map[string]runningNetwork{}
	for _, m := range s.members {
		if s.segments[m.net.ID] == m.seg {
			byID[m.net.ID] = runningNetwork{m.net, m.seg}
		}
	}
	s.mu.Unlock()
	out := make([]runningNetwork, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n.Name < out[j].n.Name })
	return out
}

// networkStats snapshots every running segment's member counters, by
// network name.
func (s *Server) networkStats() []wire.NetworkStats {
	running := s.runningNetworks()
	out := make([]wire.NetworkStats, 0, len(running))
	for _, r := range running {
		out = append(out, wire.NetworkStats{Network: r.n.Name, ID: r.n.ID, Members: memberStats(r.seg.Stats())})
	}
	return out
}

func memberStats(st segment.Stats) []wire.MemberStats {
	out := make([]wire.MemberStats, 0, len(st.Members))
	for _, m := range st.Members {
		out = append(out, wire.MemberStats{
			Name: m.Name, SandboxID: m.ID,
			RxBytes: m.RxBytes, RxPackets: m.RxPackets, TxBytes: m.TxBytes, TxPackets: m.TxPackets,
			Drops: m.Drops, TCP: m.TCP, UDP: m.UDP, NoRoute: m.NoRoute, Capped: m.Capped,
			Published: publishedStats(m.Published),
		})
	}
	return out
}

// publishedStats sums the relay's counters up as stats shows them.
func publishedStats(r forward.RelayStats) wire.PublishedStats {
	fast, gv := r.TCP[forward.Fast], r.TCP[forward.GVisor]
	return wire.PublishedStats{
		FastTCP: fast.Connections, GVisorTCP: gv.Connections, UDPFlows: r.UDP.Connections,
		BytesIn:  fast.BytesIn + gv.BytesIn + r.UDP.BytesIn,
		BytesOut: fast.BytesOut + gv.BytesOut + r.UDP.BytesOut,
	}
}

// Stats asks the running daemon for every running segment's counters;
// ErrNoDaemon when none runs (then no shared network runs either). It
// never starts a daemon.
func Stats(runtimeDir string) ([]wire.NetworkStats, error) {
	c, err := wire.Dial(filepath.Join(runtimeDir, SocketName))
	if err != nil {
		return nil, ErrNoDaemon
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var rep wire.Reply
	if err := wire.Exchange(c, wire.Hello{Request: &wire.Request{Stats: &struct{}{}}}, &rep); err != nil {
		return nil, fmt.Errorf("network daemon: %w", err)
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	return rep.Networks, nil
}

// CaptureSession is a running network capture.
type CaptureSession struct{ c *net.UnixConn }

// StartCapture asks the daemon to capture req.Network's frames into out
// (the daemon gets its own copy of the descriptor) and returns once the
// capture runs. It never starts a daemon: with none, the network is not
// running.
func StartCapture(runtimeDir string, req wire.Capture, out *os.File) (*CaptureSession, error) {
	c, err := wire.Dial(filepath.Join(runtimeDir, SocketName))
	if err != nil {
		return nil, notRunning(req.Network)
	}
	if err := wire.SendFiles(c, wire.Hello{Capture: &req}, []*os.File{out}); err != nil {
		c.Close()
		return nil, fmt.Errorf("network daemon: %w", err)
	}
	st, err := recvStatus(c)
	if err == nil && !st.Running {
		err = errors.New("network daemon: the capture did not start")
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return &CaptureSession{c: c}, nil
}

// Wait returns the capture's counts once it ends: at its count, or after
// Stop.
func (cs *CaptureSession) Wait() (wire.CaptureStatus, error) {
	defer cs.c.Close()
	return recvStatus(cs.c)
}

// Stop ends the capture (the daemon writes what it queued first); Wait
// then returns its counts.
func (cs *CaptureSession) Stop() error { return cs.c.CloseWrite() }

func recvStatus(c *net.UnixConn) (wire.CaptureStatus, error) {
	var st wire.CaptureStatus
	fds, err := wire.Recv(c, &st)
	wire.CloseFDs(fds)
	if err != nil {
		return st, fmt.Errorf("network daemon: %w", err)
	}
	if st.Error != "" {
		return st, errors.New(st.Error)
	}
	return st, nil
}
