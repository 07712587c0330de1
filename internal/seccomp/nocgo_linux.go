//go:build linux && (amd64 || arm64) && !cgo

package seccomp

import gseccomp "gvisor.dev/gvisor/pkg/seccomp"

// Without cgo (make build), the Go runtime makes every thread itself.
const cgoThread = 0

func cgoRules(r gseccomp.SyscallRules) gseccomp.SyscallRules { return r }
