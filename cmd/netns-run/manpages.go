//go:build linux && manpages

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Built only with -tags manpages (make install does): cobra/doc brings a
// markdown library whose package init would cost every netns-run process,
// the agent of each sandbox included, ~0.4 ms and 200 KB at start.
func init() { buildOnlyCommands = append(buildOnlyCommands, newManPagesCommand) }

// newManPagesCommand writes a man page per command (netns-run.1,
// netns-run-run.1, netns-run-network-create.1, ...) into DIR, from the
// same help text the commands print; make install runs it.
func newManPagesCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages into DIR (make install runs this)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // the same bytes for the same binary
			header := &doc.GenManHeader{Title: "NETNS-RUN", Section: "1", Source: "netns-run " + version(), Manual: "netns-run manual"}
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
}
