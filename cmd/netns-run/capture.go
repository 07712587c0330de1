//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/netns-run/netns-run/stack/pcap"
	"github.com/spf13/cobra"
)

// networkCommandWithCapture is the network command with its capture
// subcommand.
func networkCommandWithCapture() *cobra.Command {
	cmd := newNetworkCommand()
	cmd.AddCommand(newNetworkCapture())
	return cmd
}

// captureFlags are network capture's options.
type captureFlags struct {
	member  string
	out     string
	count   int
	snaplen int
}

func newNetworkCapture() *cobra.Command {
	var f captureFlags
	cmd := &cobra.Command{
		Use:   "capture [flags] NETWORK [FILTER...]",
		Short: "Write a running network's frames, as its switch sees them, in pcap format",
		Long: `Write the Ethernet frames of a running shared network, as its switch sees
them (every member's, the gateway's, DHCP and DNS), in pcap format to a
file (-w FILE) or to stdout (-w -, for tcpdump -r - or wireshark -k -i -),
until --count frames or ctrl-C; then "N packets captured, M dropped" on
stderr (dropped: frames the writer could not keep up with, never held
against the network). A network runs while it has member sandboxes.

FILTER is a subset of tcpdump's expressions: ` + pcap.FilterSyntax + `.`,
		Example: `  netns-run network capture appnet -w app.pcap --count 100 port 80
  netns-run network capture appnet --member db -w - | tcpdump -nr -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCapture(args[0], strings.Join(args[1:], " "), f)
		},
	}
	cmd.Flags().StringVar(&f.member, "member", "", "only the frames of this member sandbox (name, alias or id), and the broadcasts it receives")
	cmd.Flags().StringVarP(&f.out, "write", "w", "", "write the pcap to `FILE`, or - for stdout")
	cmd.Flags().IntVarP(&f.count, "count", "c", 0, "stop after N frames (0: until ctrl-C)")
	cmd.Flags().IntVarP(&f.snaplen, "snaplen", "s", 0, fmt.Sprintf("keep the first N bytes of each frame (default %d, whole frames)", pcap.DefaultSnaplen))
	return cmd
}

// checkCapture refuses what the daemon would, before any file is made.
func checkCapture(filter string, f captureFlags) error {
	if f.out == "" {
		return errors.New("network capture needs -w FILE, or -w - for stdout (pcap is binary: read it with tcpdump -r or wireshark)")
	}
	if f.count < 0 {
		return fmt.Errorf("invalid --count %d: want 0 (no limit) or more", f.count)
	}
	if f.snaplen != 0 && (f.snaplen < 14 || f.snaplen > pcap.DefaultSnaplen) {
		return fmt.Errorf("invalid --snaplen %d: want 14 to %d bytes", f.snaplen, pcap.DefaultSnaplen)
	}
	_, err := pcap.ParseFilter(filter)
	return err
}

func runCapture(network, filter string, f captureFlags) error {
	if err := checkCapture(filter, f); err != nil {
		return err
	}
	store, err := openStore()
	if err != nil {
		return err
	}
	n, err := store.Get(network)
	if err != nil {
		return err
	}
	rt, _, err := registry.OpenDefault()
	if err != nil {
		return err
	}
	out, made, err := openCaptureOutput(f.out)
	if err != nil {
		return err
	}
	defer out.Close()
	req := wire.Capture{Network: n.Name, Member: f.member, Snaplen: f.snaplen, Count: f.count, Filter: filter}
	sess, err := daemon.StartCapture(rt, req, out)
	if err != nil {
		if made {
			os.Remove(f.out)
		}
		return err
	}
	snaplen := f.snaplen
	if snaplen == 0 {
		snaplen = pcap.DefaultSnaplen
	}
	fmt.Fprintf(os.Stderr, "capturing on network %s%s, link-type EN10MB (Ethernet), snapshot length %d bytes\n", n.Name, memberNote(f.member), snaplen)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sess.Stop()
	}()
	st, err := sess.Wait()
	fmt.Fprintf(os.Stderr, "%d packets captured, %d dropped\n", st.Written, st.Dropped)
	return err
}

func memberNote(member string) string {
	if member == "" {
		return ""
	}
	return " (member " + member + ")"
}

// openCaptureOutput opens where the pcap goes: stdout for "-" (not a
// terminal), or the file, made 0644 as tcpdump's; made says it is new.
func openCaptureOutput(path string) (out *os.File, made bool, err error) {
	if path == "-" {
		if isTerminal(os.Stdout) {
			return nil, false, errors.New("-w -: stdout is a terminal; pipe it (| tcpdump -nr -) or write a file with -w FILE")
		}
		return os.Stdout, false, nil
	}
	_, statErr := os.Stat(path)
	out, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("-w: %w", err)
	}
	return out, errors.Is(statErr, fs.ErrNotExist), nil
}
