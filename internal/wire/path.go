package wire

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket can be bound to
// (sun_path is 108 bytes with its NUL).
const maxSocketPath = 107

// procFDPrefix starts the address of a socket bound through a descriptor
// of its directory (see SocketAddr).
const procFDPrefix = "/proc/self/fd/"

// SocketAddr returns an address for the socket at path that fits in
// sun_path: path itself, or for a longer one (a deep runtime directory)
// /proc/self/fd/N/BASE, where N is a descriptor of path's directory that
// the caller closes when it no longer needs the address (dirFD is -1
// when none was opened).
func SocketAddr(path string) (addr string, dirFD int, err error) {
	if len(path) <= maxSocketPath {
		return path, -1, nil
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("socket %s: %w", path, err)
	}
	addr = procFDPrefix + strconv.Itoa(fd) + "/" + base
	if len(addr) > maxSocketPath {
		unix.Close(fd)
		return "", -1, fmt.Errorf("socket %s: its file name is too long for a unix socket", path)
	}
	return addr, fd, nil
}

// DirFDOf returns the directory descriptor in an address of SocketAddr's,
// or -1.
func DirFDOf(addr string) int {
	rest, ok := strings.CutPrefix(addr, procFDPrefix)
	if !ok {
		return -1
	}
	n, _, ok := strings.Cut(rest, "/")
	if fd, err := strconv.Atoi(n); ok && err == nil && fd >= 0 {
		return fd
	}
	return -1
}
