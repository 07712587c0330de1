//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/runner"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/spf13/cobra"
)

func newStatsCommand() *cobra.Command {
	var noStream bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [flags] [NAME...]",
		Short: "Show the running sandboxes' network counters, as docker stats' NET I/O",
		Long: `Show each running sandbox's network counters, one row per network it is
on: RX and TX bytes and packets (from the sandbox's side, Ethernet headers
included), the frames the switch dropped with their reasons (also the DNS
queries and DHCP messages over the member's rates: "dns over rate", "dhcp
over rate"), and the TCP connections and UDP flows open in the gateway.
--format json also has the published ports' connections by path (fast_tcp:
the loopback fast path, gvisor_tcp, udp_flows) and the bytes relayed to and
from the sandbox. Without --no-stream the table is redrawn every second
until ctrl-C.

On the shared networks (the bridge, user-defined networks) the network's
switch counts; on --network private the sandbox's own supervisor, whose
stack its eth0 goes straight into, counts at its end of the link (echo
requests past the gateway, answered from the host, are not in TX there). A
sandbox on --network none or host is listed with "-".`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "" && format != "json" && format != "table" {
				return fmt.Errorf("invalid --format %q: want table or json", format)
			}
			show := func() error {
				rows, err := collectStats(args)
				if err != nil {
					return err
				}
				return writeStats(os.Stdout, format, rows)
			}
			if noStream {
				return show()
			}
			return streamStats(show, format != "json")
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print once and exit")
	cmd.Flags().StringVar(&format, "format", "", "table (the default) or json (one object a line)")
	return cmd
}

// statsRow is one sandbox on one network.
type statsRow struct {
	Name    string `json:"Name"`
	ID      string `json:"ID"`
	Network string `json:"Network"`
	// Counters is null on --network none and host (nothing counts there)
	// and where the supervisor of a private network did not answer.
	Counters *wire.MemberStats `json:"Counters"`
}

// collectStats joins the running sandboxes (refs, or all) with the
// daemon's counters of their shared networks and with their supervisors'
// of their private ones.
func collectStats(refs []string) ([]statsRow, error) {
	rt, reg, err := registry.OpenDefault()
	if err != nil {
		return nil, err
	}
	recs, err := runningRecords(reg, refs)
	if err != nil {
		return nil, err
	}
	nets, err := daemon.Stats(rt)
	if err != nil && !errors.Is(err, daemon.ErrNoDaemon) {
		return nil, err
	}
	return statsRows(recs, nets, privateStats(recs)), nil
}

// privateStats asks the supervisor of each sandbox on --network private
// for its network's counters, by sandbox id. One that does not answer
// (its sandbox is ending) is left out: its row shows "-".
func privateStats(recs []registry.Record) map[string]*wire.MemberStats {
	out := map[string]*wire.MemberStats{}
	for _, r := range recs {
		if r.Network != runner.Private || r.ControlSocket == "" {
			continue
		}
		if st, err := runner.PrivateStats(r.ControlSocket); err == nil {
			out[r.ID] = &st
		}
	}
	return out
}

// runningRecords are the named sandboxes, which must be running, or all
// running ones.
func runningRecords(reg *registry.Registry, refs []string) ([]registry.Record, error) {
	if len(refs) == 0 {
		all, err := reg.List()
		if err != nil {
			return nil, err
		}
		var out []registry.Record
		for _, r := range all {
			if r.State == registry.Running {
				out = append(out, r)
			}
		}
		return out, nil
	}
	out := make([]registry.Record, 0, len(refs))
	for _, ref := range refs {
		r, err := reg.Get(ref)
		if err != nil {
			return nil, err
		}
		if r.State != registry.Running {
			return nil, fmt.Errorf("sandbox %s is not running", r.Name)
		}
		out = append(out, r)
	}
	return out, nil
}

// statsRows gives each sandbox a row per network the daemon counts it on
// and one for its private network (with the counters in private, by
// sandbox id, if its supervisor gave them), or one row with no counters.
func statsRows(recs []registry.Record, nets []wire.NetworkStats, private map[string]*wire.MemberStats) []statsRow {
	var rows []statsRow
	for _, r := range recs {
		found := false
		if r.Network == runner.Private {
			rows = append(rows, statsRow{Name: r.Name, ID: r.ID, Network: r.Network, Counters: private[r.ID]})
			found = true
		}
		for _, n := range nets {
			for _, m := range n.Members {
				if m.SandboxID == r.ID {
					m := m
					rows = append(rows, statsRow{Name: r.Name, ID: r.ID, Network: n.Network, Counters: &m})
					found = true
				}
			}
		}
		if !found {
			rows = append(rows, statsRow{Name: r.Name, ID: r.ID, Network: r.Network})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Name != rows[j].Name {
			return rows[i].Name < rows[j].Name
		}
		return rows[i].Network < rows[j].Network
	})
	return rows
}

// writeStats prints the rows as a table, or as JSON one row a line.
func writeStats(w io.Writer, format string, rows []statsRow) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNETWORK\tRX\tTX\tDROPS\tTCP\tUDP")
	for _, r := range rows {
		c := r.Counters
		if c == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\n", r.Name, r.Network)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.Name, r.Network,
			bytesPackets(c.RxBytes, c.RxPackets), bytesPackets(c.TxBytes, c.TxPackets), drops(c.Drops), c.TCP, c.UDP)
	}
	return tw.Flush()
}

// bytesPackets reads as docker stats' sizes: "1.45kB / 12 pkts".
func bytesPackets(bytes, packets uint64) string {
	return fmt.Sprintf("%s / %d pkts", units.HumanSizeWithPrecision(float64(bytes), 3), packets)
}

// drops is the total, then each reason's count: "3 (spoofed source 2, ...)".
func drops(by map[string]uint64) string {
	var total uint64
	reasons := make([]string, 0, len(by))
	for r, n := range by {
		total += n
		reasons = append(reasons, r)
	}
	if total == 0 {
		return "0"
	}
	sort.Strings(reasons)
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, by[r])
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// streamStats shows the stats every second until ctrl-C, redrawing the
// screen for a table as docker stats does.
func streamStats(show func() error, redraw bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if redraw {
			fmt.Print("\033[2J\033[H")
		}
		if err := show(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
