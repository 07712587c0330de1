//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/netns-run/netns-run/internal/daemon"
	"github.com/netns-run/netns-run/internal/registry"
	"github.com/spf13/cobra"
)

// followEvery is how often daemon logs -f looks for more of the log.
const followEvery = 200 * time.Millisecond

func newDaemonLogsCommand() *cobra.Command {
	var follow bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [flags]",
		Short: "Print the on-demand network daemon's log",
		Long: `Print the log of the network daemon that netns-run starts on demand:
$XDG_RUNTIME_DIR/netns-run/daemon.log, after daemon.log.1 (the log before
its last rotation at 8 MiB) when there is one. -f then prints what the
daemon writes until ctrl-C, across rotations and daemon restarts. The
level is daemon.json's "log-level" (see netns-run daemon --help).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lines := -1
			if tail != "all" {
				n, err := strconv.Atoi(tail)
				if err != nil || n < 0 {
					return fmt.Errorf("invalid --tail %q: want a number of lines or all", tail)
				}
				lines = n
			}
			rt, err := registry.RuntimeDir()
			if err != nil {
				return err
			}
			return printDaemonLog(rt, lines, follow, os.Stdout)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "go on printing what the daemon logs until ctrl-C")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "print only the last N lines of the log")
	return cmd
}

// printDaemonLog writes the daemon's log (its last lines only, unless
// lines is -1) to w, then with follow what is added to it.
func printDaemonLog(runtimeDir string, lines int, follow bool, w io.Writer) error {
	path := daemon.LogPath(runtimeDir)
	old, err := readIfExists(daemon.RotatedLogPath(runtimeDir))
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !follow:
		if old == nil {
			return fmt.Errorf("no daemon log at %s yet: the daemon starts with the first sandbox on a shared network", path)
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("daemon log: %w", err)
	}
	var cur []byte
	if f != nil {
		if cur, err = io.ReadAll(f); err != nil {
			f.Close()
			return fmt.Errorf("daemon log %s: %w", path, err)
		}
	}
	if _, err := w.Write(lastLines(append(old, cur...), lines)); err != nil || !follow {
		f.Close() // nil-safe: there may be none
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return followLog(ctx, path, f, w)
}

// readIfExists is the file's contents, nil when it does not exist.
func readIfExists(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	return b, nil
}

// lastLines is the last n lines of b (all of it when n is -1).
func lastLines(b []byte, n int) []byte {
	switch {
	case n < 0:
		return b
	case n == 0:
		return nil
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end-- // the last line's newline ends it, it starts none
	}
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n--; n == 0 {
				return b[i+1:]
			}
		}
	}
	return b // fewer than n lines
}

// followLog copies what is written to the log at path to w until ctx
// ends; f is the log read so far (nil if there was none), which it
// closes. When path is another file (rotated, or a new daemon's), f's
// rest is copied and the new file is followed from its start.
func followLog(ctx context.Context, path string, f *os.File, w io.Writer) error {
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		if f != nil {
			if _, err := io.Copy(w, f); err != nil {
				return err
			}
		}
		if next, err := os.Open(path); err == nil {
			if f == nil || !sameFile(f, next) {
				if f != nil {
					if _, err := io.Copy(w, f); err != nil { // what it got before it was moved
						next.Close()
						return err
					}
					f.Close()
				}
				f = next
				continue
			}
			next.Close()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func sameFile(a, b *os.File) bool {
	sa, errA := a.Stat()
	sb, errB := b.Stat()
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
