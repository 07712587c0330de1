//go:build linux && (amd64 || arm64) && cgo

package seccomp

// cgoBuild: glibc makes this process's threads (glibc_linux.go).
const cgoBuild = true
