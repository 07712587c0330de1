package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rawSend writes hand-made Ethernet frames out of an interface through a
// packet socket, as an attacker inside a sandbox can (it has CAP_NET_RAW
// in its own network namespace): each frame, given in hex (HEX/N: padded
// with zeros to N bytes), -count times.
func rawSend(args []string) error {
	fs := flag.NewFlagSet("rawsend", flag.ContinueOnError)
	count := fs.Int("count", 1, "times each frame is sent")
	burst := fs.Int("burst", 0, "pause 2 ms after every N frames (0: never), so that the interface's queue does not overflow")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() < 2 {
		return usageError{"want IFACE HEXFRAME..."}
	}
	ifi, err := net.InterfaceByName(fs.Arg(0))
	if err != nil {
		return err
	}
	var frames [][]byte
	for _, h := range fs.Args()[1:] {
		h, pad, padded := strings.Cut(h, "/")
		b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
		if err != nil {
			return usageError{fmt.Sprintf("frame %q: %v", h, err)}
		}
		if padded {
			// HEX/N: zeros up to N bytes, for frames longer than an
			// argument may be.
			n, err := strconv.Atoi(pad)
			if err != nil || n < len(b) {
				return usageError{fmt.Sprintf("frame %q: /%s is not a length of at least %d", h, pad, len(b))}
			}
			b = append(b, make([]byte, n-len(b))...)
		}
		frames = append(frames, b)
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0) // protocol 0: send only
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer syscall.Close(fd)
	to := &syscall.SockaddrLinklayer{Ifindex: ifi.Index}
	sent := 0
	for _, f := range frames {
		for range *count {
			if err := syscall.Sendto(fd, f, 0, to); err != nil {
				return fmt.Errorf("send a %d-byte frame: %w", len(f), err)
			}
			sent++
			if *burst > 0 && sent%*burst == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}
	fmt.Printf("sent %d frames\n", sent)
	return nil
}

// logUDP prints every datagram that arrives on the port, as
// "from IP:PORT PAYLOAD", and answers nothing: a victim's record of what
// reached it.
func logUDP(args []string) error {
	if len(args) != 1 {
		return usageError{"want PORT"}
	}
	pc, err := net.ListenPacket("udp4", ":"+args[0])
	if err != nil {
		return err
	}
	defer pc.Close()
	ready()
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		fmt.Printf("from %s %s\n", from, buf[:n])
	}
}
