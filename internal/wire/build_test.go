package wire

import (
	"runtime/debug"
	"testing"
)

func TestBuildName(t *testing.T) {
	for _, c := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{nil, "v1.2.3"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}, "v1.2.3 abc"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}, "v1.2.3 abc+changes"},
		{[]debug.BuildSetting{{Key: "GOARCH", Value: "amd64"}}, "v1.2.3"},
	} {
		info := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: c.settings}
		if got := buildName(info); got != c.want {
			t.Errorf("buildName(%v) = %q; want %q", c.settings, got, c.want)
		}
	}
}
