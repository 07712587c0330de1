package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"sync"
	"time"
)

// holdTCP opens -n connections to ADDR at once, counts those that get the
// server's first line (a whoami banner: the connection is really through),
// prints "held K of N", and keeps them open for -for: a member using up
// its connections. With -send B it also writes B bytes on each and never
// reads again: a stuck member whose echoes pile up on the way.
func holdTCP(args []string) error {
	fs := flag.NewFlagSet("hold-tcp", flag.ContinueOnError)
	n := fs.Int("n", 100, "connections")
	hold := fs.Duration("for", 10*time.Second, "how long to keep them open")
	send := fs.Int("send", 0, "bytes to write on each connection, never reading the echo")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usageError{"want [-n N] [-for D] ADDR"}
	}
	var (
		mu    sync.Mutex
		held  []net.Conn
		wg    sync.WaitGroup
		slots = make(chan struct{}, 64) // dials at once
	)
	for range *n {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			c, err := net.DialTimeout("tcp", fs.Arg(0), 8*time.Second) // past a SYN dropped at the handshake limit
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				c.Close()
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("held %d of %d\n", len(held), *n)
	if *send > 0 {
		junk := make([]byte, *send)
		for _, c := range held {
			go func() {
				c.SetWriteDeadline(time.Now().Add(*hold))
				c.Write(junk) // blocks once every buffer on the way is full
			}()
		}
	}
	time.Sleep(*hold)
	for _, c := range held {
		c.Close()
	}
	return nil
}
