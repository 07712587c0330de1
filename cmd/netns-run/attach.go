//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/sandbox"
	"github.com/netns-run/netns-run/internal/wire"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// defaultDetachKeys are Docker's.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// errDetachedAttach is what docker attach says, with status 1, when the
// detach keys were typed.
var errDetachedAttach = errors.New("read escape sequence")

func newAttachCommand() *cobra.Command {
	var detachKeys string
	var noStdin, sigProxy bool
	cmd := &cobra.Command{
		Use:   "attach [--detach-keys KEYS] [--no-stdin] [--sig-proxy=false] SANDBOX",
		Short: "Connect this terminal to a running sandbox's command (detach with ctrl-p ctrl-q)",
		Long: `Connect this terminal to a running sandbox's command, as docker attach.

A sandbox started with -t (run -itd): its terminal's output shows here, keys
typed go to it (this terminal in raw mode, its window size followed), and
the detach keys (ctrl-p ctrl-q unless --detach-keys says otherwise) leave
it running. Without a terminal, the output it writes from now on (its log)
shows here, and with --sig-proxy (the default) the signals this process gets
go to the command, as docker attach does for a sandbox without -t. Either
way attach ends with the command's exit status when it ends.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			_, r, err := findSandbox(args[0])
			if err != nil {
				return err
			}
			if r.State != registry.Running {
				return fmt.Errorf("sandbox %s is not running: attach reaches a running one (ps lists them)", args[0])
			}
			if r.ControlSocket == "" {
				return fmt.Errorf("sandbox %s is starting and takes no attach yet: try again", args[0])
			}
			withStdin := r.Tty && r.OpenStdin && !noStdin // as Docker: input only to a sandbox started with -i
			if withStdin && !isTerminal(os.Stdin) {
				return fmt.Errorf("the input device is not a TTY: sandbox %s has a terminal; attach from one, or add --no-stdin", args[0])
			}
			if !r.Tty && r.LogPath == "" {
				return fmt.Errorf("sandbox %s has no terminal and no log (it was not started with -d or -t): its output goes to the terminal it runs in", args[0])
			}
			c, err := wire.Dial(r.ControlSocket)
			if err != nil {
				return fmt.Errorf("reach the sandbox's supervisor (is it running?): %w", err)
			}
			req := wire.AttachRequest{DetachKeys: keys, Stdin: withStdin}
			var proxy []os.Signal
			if sigProxy && !r.Tty {
				proxy = wire.ForwardedSignals[:len(wire.ForwardedSignals)-1] // all but SIGWINCH
			}
			return attach(c, req, r.Tty, r.LogPath, proxy, errDetachedAttach)
		},
	}
	cmd.Flags().StringVar(&detachKeys, "detach-keys", defaultDetachKeys, "the keys that detach: a comma-separated sequence of single characters and ctrl-@, ctrl-a ... ctrl-z, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_")
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not pass this terminal's input on")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "pass the signals this process gets on to the command (a sandbox without -t; with one, ^C is a key like any)")
	return cmd
}

// attach serves one attach connection c until the session ends. With
// the sandbox's terminal this one goes into raw mode; without, the log is
// printed from its current end. onDetach is what typing the detach keys
// returns (attach: Docker's "read escape sequence" with status 1; run -it:
// nothing).
func attach(c *net.UnixConn, req wire.AttachRequest, tty bool, logPath string, proxy []os.Signal, onDetach error) error {
	var logf *os.File
	if !tty {
		f, err := os.Open(logPath)
		if err != nil {
			c.Close()
			return fmt.Errorf("open the sandbox's log: %w", err)
		}
		defer f.Close()
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			c.Close()
			return fmt.Errorf("the sandbox's log: %w", err)
		}
		logf = f
	}
	a, err := sandbox.AttachTo(c, req, tty, os.Stdin, os.Stdout, tty && req.Stdin)
	if err != nil {
		c.Close()
		return err
	}
	defer a.Close()
	stop, tailed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(tailed)
		if logf == nil {
			return
		}
		for {
			io.Copy(os.Stdout, logf)
			select {
			case <-stop:
				io.Copy(os.Stdout, logf) // what came last
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	res, err := a.Wait(proxy)
	close(stop)
	<-tailed
	a.Close() // the terminal back to its settings before a word is printed
	switch {
	case err != nil:
		return err
	case res.Detached && onDetach != nil:
		fmt.Fprintln(os.Stderr, onDetach)
		return &exitError{code: 1}
	case res.Detached:
		return nil
	case res.Code != 0:
		return &exitError{code: res.Code}
	}
	return nil
}

// parseDetachKeys reads Docker's --detach-keys syntax.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = defaultDetachKeys
	}
	var out []byte
	for _, k := range strings.Split(s, ",") {
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case k == "DEL":
			out = append(out, 127)
		case strings.HasPrefix(k, "ctrl-") && len(k) == 6 && (k[5] >= 'a' && k[5] <= 'z' || strings.IndexByte("@[\\]^_", k[5]) >= 0):
			c := k[5]
			if c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c-'@')
		default:
			return nil, fmt.Errorf("invalid --detach-keys %q: %q is not a key; use single characters and ctrl-@, ctrl-a ... ctrl-z, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_ or DEL, comma-separated (Docker's default: ctrl-p,ctrl-q)", s, k)
		}
	}
	return out, nil
}

// isTerminal says whether f is a terminal, without changing its
// blocking mode (as File.Fd would).
func isTerminal(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var terr error = unix.ENOTTY
	rc.Control(func(fd uintptr) { _, terr = unix.IoctlGetTermios(int(fd), unix.TCGETS) })
	return terr == nil
}
