//go:build linux && (amd64 || arm64) && !cgo

package seccomp

// cgoBuild: without cgo (make build), the Go runtime makes every thread
// itself.
const cgoBuild = false
