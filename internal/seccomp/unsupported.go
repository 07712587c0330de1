//go:build !linux || !(amd64 || arm64)

// Package seccomp confines a running netns-run process to the system
// calls it needs; see seccomp_linux.go. Filters are built for linux/amd64
// and linux/arm64 only.
package seccomp

import (
	"fmt"
	"runtime"
)

// Install fails: no filter is built for this platform.
func Install() error {
	return fmt.Errorf("install the syscall filter: not supported on %s/%s", runtime.GOOS, runtime.GOARCH)
}
