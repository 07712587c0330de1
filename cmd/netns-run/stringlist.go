package main

import (
	"strings"

	"github.com/spf13/pflag"
)

// stringList is a repeatable string flag, as pflag's StringArray is:
// each use adds one value, commas and all. pflag's renders every such
// flag's default through a csv writer with a 4 KiB buffer when the flag
// is defined: 120 KB for the command tree that every netns-run process
// builds, a sandbox's supervisor included, where it stays resident.
type stringList struct{ values *[]string }

func (l stringList) Set(v string) error {
	*l.values = append(*l.values, v)
	return nil
}

// Type is pflag's name for the same kind of flag, which help shows.
func (l stringList) Type() string { return "stringArray" }

// String is empty with no values, so that help shows no default.
func (l stringList) String() string {
	if len(*l.values) == 0 {
		return ""
	}
	return "[" + strings.Join(*l.values, ",") + "]"
}

// stringListVarP defines a repeatable string flag on fs, starting empty.
func stringListVarP(fs *pflag.FlagSet, p *[]string, name, short, usage string) {
	fs.VarP(stringList{p}, name, short, usage)
}
