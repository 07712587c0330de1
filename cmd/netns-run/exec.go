//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/netns-run/netns-run/internal/registry"
	"github.com/netns-run/netns-run/internal/sandbox"
	"github.com/spf13/cobra"
)

func newExecCommand() *cobra.Command {
	var interactive, tty bool
	var env, envFiles []string
	var dir, userSpec string
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] [-e KEY=VALUE] [-w DIR] [-u USER[:GROUP]] SANDBOX [--] CMD [ARG...]",
		Short: "Run a command inside a running sandbox, in the sandbox's environment",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := execTarget(args[0])
			if err != nil {
				return err
			}
			stdin := os.Stdin
			if !interactive {
				devnull, err := os.Open(os.DevNull)
				if err != nil {
					return err
				}
				defer devnull.Close()
				stdin = devnull
			}
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return fmt.Errorf("no command given: usage: netns-run exec [-i] [-t] SANDBOX -- CMD [ARG...]")
			}
			set, err := envVars(env, envFiles)
			if err != nil {
				return err
			}
			// Nil Env: the sandbox's own environment, as Docker's exec.
			req := sandbox.ExecRequest{Argv: argv, EnvSet: set, Dir: dir, Tty: tty, User: userSpec}
			code, err := sandbox.ExecVia(r.ExecSocket, req, stdin, os.Stdout, os.Stderr)
			var se *sandbox.Error
			if err != nil && !errors.As(err, &se) && !errors.Is(err, sandbox.ErrSandboxEnded) {
				return err
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "netns-run: %v\n", err)
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false) // flags after CMD are CMD's
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "pass stdin to the command")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "give the command a terminal")
	stringListVarP(cmd.Flags(), &env, "env", "e", "set KEY=VALUE on top of the sandbox's environment (repeatable)")
	stringListVarP(cmd.Flags(), &envFiles, "env-file", "", "read KEY=VALUE lines from a file (repeatable)")
	cmd.Flags().StringVarP(&dir, "workdir", "w", "", "working directory inside the sandbox")
	cmd.Flags().StringVarP(&userSpec, "user", "u", "", "run as USER[:GROUP], names or numbers, from the sandbox's /etc/passwd and /etc/group (ids other than 0 need a sandbox run with --userns=auto)")
	return cmd
}

// execTarget is the running sandbox ref names, once its exec socket is
// recorded: a sandbox whose command has just started records it a moment
// later, so a script's exec right after run waits for it (up to 2 s)
// instead of failing.
func execTarget(ref string) (registry.Record, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, r, err := findSandbox(ref)
		if err != nil {
			return registry.Record{}, err
		}
		if r.State != registry.Running {
			return registry.Record{}, fmt.Errorf("sandbox %s is not running", ref)
		}
		if r.ExecSocket != "" {
			return r, nil
		}
		if time.Now().After(deadline) {
			return registry.Record{}, fmt.Errorf("sandbox %s is starting and serves no exec yet: try again", ref)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
