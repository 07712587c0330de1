// Command slirpctl sends one JSON request to slirp4netns's API socket and
// prints the reply, so the bench needs no socat just to publish ports:
//
//	slirpctl SOCKET '{"execute":"add_hostfwd","arguments":{...}}'
//
// It exits 1 when the reply carries an "error" member.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: slirpctl SOCKET JSON")
		os.Exit(2)
	}
	c, err := net.DialTimeout("unix", os.Args[1], 5*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "slirpctl: %v\n", err)
		os.Exit(1)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, os.Args[2]); err != nil {
		fmt.Fprintf(os.Stderr, "slirpctl: write: %v\n", err)
		os.Exit(1)
	}
	// slirp4netns answers once and then waits for the client to close;
	// half-close so that it sees the end of the request.
	c.(*net.UnixConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil && len(reply) == 0 {
		fmt.Fprintf(os.Stderr, "slirpctl: read: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(reply))
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(reply, &r) == nil && r.Error != nil {
		os.Exit(1)
	}
}
