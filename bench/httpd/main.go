// Command httpd is the bench's HTTP server: it answers every request with the
// same small body, so that wrk measures the network path (connection set-up,
// proxying) and not the server.
//
//	httpd [-l :8080] [-size 600]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	addr := flag.String("l", ":8080", "listen address")
	size := flag.Int("size", 600, "body size in bytes (600: the static file the anchor harness serves)")
	flag.Parse()
	body := bytes.Repeat([]byte("x"), *size)
	clen := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", clen)
		w.Write(body)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("httpd: %v", err)
	}
	fmt.Fprintf(os.Stderr, "httpd: listening on %s\n", ln.Addr())
	// No access log, default keep-alive; "Connection: close" requests get
	// their connection closed after the response, as wrk -H asks.
	srv := &http.Server{Handler: h, ErrorLog: log.New(discard{}, "", 0)}
	log.Fatal(srv.Serve(ln))
}

// discard drops the server's error log: wrk's closed connections would
// otherwise fill the log file.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
