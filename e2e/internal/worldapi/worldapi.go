// Package worldapi is the control API of the e2e world agent: an HTTP+JSON
// service on a unix socket through which tests, which have no capabilities,
// make the world host (198.51.100.2) dial the host namespace.
//
//	GET  /ping  -> "pong"
//	POST /dial  DialRequest -> DialResponse
package worldapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// DialRequest is the body of POST /dial.
type DialRequest struct {
	Net       string `json:"net"`  // "tcp" or "udp"
	Addr      string `json:"addr"` // IP:PORT in 198.51.100.0/24 or [IP]:PORT in 2001:db8::/64
	Send      string `json:"send"`
	TimeoutMS int    `json:"timeout_ms"`
}

// DialResponse is its answer. TCP: Reply is everything read until EOF (the
// agent half-closes after sending). UDP: the first datagram; the agent
// resends every 500ms until one arrives. Error is empty on success; Reply
// holds what was read even when it is not. Local is the agent's own address.
type DialResponse struct {
	Reply string `json:"reply"`
	Error string `json:"error"`
	Local string `json:"local,omitempty"`
}

// Client talks to the agent's socket.
type Client struct {
	hc *http.Client
}

// New returns a client of the agent listening on sock.
func New(sock string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	return &Client{hc: &http.Client{Transport: tr}}
}

// Ping checks that the agent answers.
func (c *Client) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://world/ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("world agent: %s", resp.Status)
	}
	return nil
}

// Dial asks the agent to dial r.Addr from the world. The HTTP exchange is
// bounded by ctx and by the request's own timeout plus a margin.
func (c *Client) Dial(ctx context.Context, r DialRequest) (DialResponse, error) {
	var out DialResponse
	if r.TimeoutMS <= 0 {
		r.TimeoutMS = 3000
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(r.TimeoutMS)*time.Millisecond+5*time.Second)
	defer cancel()
	body, err := json.Marshal(r)
	if err != nil {
		return out, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://world/dial", bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return out, err
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("world agent: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("world agent: bad answer %q: %w", data, err)
	}
	return out, nil
}
