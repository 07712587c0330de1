package agent

import (
	"errors"
	"fmt"
	"os"

	"github.com/netns-run/netns-run/internal/wire"
	"golang.org/x/sys/unix"
)

// Listening sockets on the sandbox's loopback, for -T (forward.ServeToHost):
// the agent binds them before the command starts, so that the command finds
// its ports open from its first instant, and hands them to the supervisor,
// which accepts on them from the host's side (a socket keeps the network
// namespace it was made in, whoever holds it).

// listenLoopback binds each port on 127.0.0.1 and, where the sandbox has
// IPv6, on ::1. The sockets are close-on-exec: the command does not
// inherit them.
func listenLoopback(ports []uint16) ([]int, error) {
	var fds []int
	for _, port := range ports {
		fd, err := listenTCP(unix.AF_INET, &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}})
		if err != nil {
			wire.CloseFDs(fds)
			return nil, fmt.Errorf("listen on the sandbox's 127.0.0.1:%d: %w", port, err)
		}
		fds = append(fds, fd)
		fd, err = listenTCP(unix.AF_INET6, &unix.SockaddrInet6{Port: int(port), Addr: [16]byte{15: 1}})
		switch {
		case err == nil:
			fds = append(fds, fd)
		case errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EADDRNOTAVAIL):
			// No IPv6 in this kernel or on lo: IPv4 only.
		default:
			wire.CloseFDs(fds)
			return nil, fmt.Errorf("listen on the sandbox's [::1]:%d: %w", port, err)
		}
	}
	return fds, nil
}

func listenTCP(family int, sa unix.Sockaddr) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if family == unix.AF_INET6 {
		// [::1] only: 127.0.0.1 has a socket of its own.
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("listen", err)
	}
	return fd, nil
}
