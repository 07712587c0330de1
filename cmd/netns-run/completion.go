//go:build linux

package main

import (
	"slices"
	"strings"

	"github.com/netns-run/netns-run/internal/registry"
	"github.com/spf13/cobra"
)

// What a command's positional arguments name, for shell completion.
const (
	argSandbox = iota // a sandbox, any state
	argRunning        // a running sandbox
	argNetwork        // a network
	argNone           // the command's own words (exec's CMD): the shell's default
)

// completedArgs: per command path, what each argument is; the last kind
// repeats (stop A B C).
var completedArgs = map[string][]int{
	"attach":             {argRunning, argNone},
	"exec":               {argRunning, argNone},
	"logs":               {argSandbox, argNone},
	"port":               {argSandbox, argNone},
	"inspect":            {argSandbox},
	"stop":               {argRunning},
	"rm":                 {argSandbox},
	"stats":              {argRunning},
	"network inspect":    {argNetwork},
	"network rm":         {argNetwork},
	"network capture":    {argNetwork, argNone},
	"network connect":    {argNetwork, argRunning, argNone},
	"network disconnect": {argNetwork, argRunning, argNone},
}

// completeNames gives the commands of completedArgs completion of the
// names of the user's sandboxes and networks (cobra's completion command
// then offers them in bash, zsh and fish).
func completeNames(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if kinds, ok := completedArgs[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(_ *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
				kind := kinds[min(len(args), len(kinds)-1)]
				if kind == argNone {
					return nil, cobra.ShellCompDirectiveDefault
				}
				return matching(names(kind), prefix, args), cobra.ShellCompDirectiveNoFileComp
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// names lists what kind names; nothing when the registry or store cannot
// be read (completion must not print errors into the user's line).
func names(kind int) []string {
	var out []string
	switch kind {
	case argNetwork:
		store, err := openStore()
		if err != nil {
			return nil
		}
		ns, err := store.List()
		if err != nil {
			return nil
		}
		for _, n := range ns {
			out = append(out, n.Name)
		}
		for name := range virtualDrivers {
			out = append(out, name)
		}
	default:
		reg, err := openRegistry()
		if err != nil {
			return nil
		}
		recs, err := reg.List()
		if err != nil {
			return nil
		}
		for _, r := range recs {
			if kind == argSandbox || r.State == registry.Running {
				out = append(out, r.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// matching keeps the names that start with prefix and are not given yet.
func matching(all []string, prefix string, given []string) []cobra.Completion {
	var out []cobra.Completion
	for _, n := range all {
		if strings.HasPrefix(n, prefix) && !slices.Contains(given, n) {
			out = append(out, n)
		}
	}
	return out
}
