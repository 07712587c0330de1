//go:build !linux || !(amd64 || arm64)

// Package seccomp confines a running netns-run process to the system
// calls it needs; see seccomp_linux.go. Filters are built for linux/amd64
// and linux/arm64 only.
package seccomp

import (
	"fmt"
	"log/slog"
	"runtime"
)

// Install fails: no filter is built for this platform.
func (r Role) Install(log *slog.Logger, also ...int) error { return r.compile(also).Install(log) }

// Filter is a role's filter; on this platform there is none to install.
type Filter struct {
	role Role
	dflt bool
}

func (r Role) compile([]int) *Filter { return &Filter{role: r} }

// Install fails: no filter is built for this platform. A nil Filter
// installs nothing.
func (f *Filter) Install(*slog.Logger) error {
	if f == nil {
		return nil
	}
	err := fmt.Errorf("install the syscall filter: not supported on %s/%s", runtime.GOOS, runtime.GOARCH)
	if f.dflt {
		err = fmt.Errorf("%w; the %s goes on without it (%s=0 silences this)", err, f.role, Env)
	}
	return err
}
