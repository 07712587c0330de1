package wire

import (
	"runtime/debug"
	"sync"
)

// Build names the build of this binary: its module version and, when it
// was built from a checkout, the commit (and whether the tree had
// changes). netns-run and netns-run-agent built together name the same
// one; empty when the binary carries no build information.
var Build = sync.OnceValue(func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	return buildName(info)
})

func buildName(info *debug.BuildInfo) string {
	name := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			name += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				name += "+changes"
			}
		}
	}
	return name
}
