package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ServePacket answers DNS queries arriving on pc (UDP), replying to each
// query's sender only. It takes ownership of pc and closes it on return.
//
// ServePacket returns nil once ctx is done, or the error that stopped reading
// from pc, for example because pc was closed. Either way it first waits for
// the queries it has in flight, which are abandoned promptly.
func (p *Proxy) ServePacket(ctx context.Context, pc net.PacketConn) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		pc.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		<-ctx.Done() // cancelled on return at the latest
		pc.Close()
	})

	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, client, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("resolver: reading queries: %w", err)
		}
		// The rate first: a flood costs no parsing past it. Cloned: the
		// unpacked message may share memory with its input.
		if !p.admit(client) {
			continue
		}
		req := p.parse(slices.Clone(buf[:n]), "udp", client)
		if req == nil {
			continue
		}
		if !p.tryAcquire() {
			p.counts.busy.Add(1)
			p.log.Debug("resolver: too many queries in flight, dropping",
				"transport", "udp", "client", client)
			continue
		}
		wg.Go(func() {
			defer p.release()
			defer p.recoverPanic("udp")
			p.answerPacket(ctx, pc, client, req)
		})
	}
}

func (p *Proxy) answerPacket(ctx context.Context, pc net.PacketConn, client net.Addr, req *dns.Msg) {
	resp := p.resolve(ctx, client, req)
	if resp == nil || ctx.Err() != nil {
		return
	}
	resp.Truncate(clientUDPSize(req))
	out, err := resp.Pack()
	if err != nil {
		p.log.Debug("resolver: packing reply failed, replying SERVFAIL",
			"transport", "udp", "client", client, "err", err)
		if out, err = synth(req, dns.RcodeServerFailure).Pack(); err != nil {
			return
		}
	}
	if _, err := pc.WriteTo(out, client); err != nil {
		p.log.Debug("resolver: writing reply failed",
			"transport", "udp", "client", client, "err", err)
	}
}

// ServeStream answers DNS queries on connections accepted from ln (TCP, with
// each message preceded by its two-byte length). A connection may carry
// several queries, which are answered concurrently and so possibly out of
// order (RFC 7766); it is closed once it has been idle for 10s and its
// replies are written. Queries arriving over TCP are forwarded the same way as
// those over UDP (UDP to the upstream first, TCP if truncated). ServeStream
// takes ownership of ln and closes it on return.
//
// ServeStream returns nil once ctx is done, or the error that stopped
// accepting from ln, for example because ln was closed. Either way it first
// closes its connections and waits for their goroutines.
func (p *Proxy) ServeStream(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		ln.Close()
		wg.Wait()
	}()
	wg.Go(func() {
		<-ctx.Done() // cancelled on return at the latest
		ln.Close()
	})

	conns := make(chan struct{}, maxTCPConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("resolver: accepting connections: %w", err)
		}
		select {
		case conns <- struct{}{}:
		default:
			p.log.Debug("resolver: too many TCP connections, closing",
				"client", c.RemoteAddr())
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-conns }()
			p.serveConn(ctx, c)
		})
	}
}

// serveConn reads queries from c until it is idle, fails or ctx is done,
// then waits for the replies and closes c.
func (p *Proxy) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	client := c.RemoteAddr()
	var (
		wg      sync.WaitGroup
		writeMu sync.Mutex
		pending = make(chan struct{}, maxPipelined)
	)
	defer wg.Wait()

	for {
		c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		msg, err := readFrame(c)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				p.log.Debug("resolver: TCP connection ends",
					"client", client, "err", err)
			}
			return
		}
		if !p.admit(client) {
			continue // the framing is intact, so later queries can be read
		}
		req := p.parse(msg, "tcp", client)
		if req == nil {
			continue
		}
		select {
		case pending <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !p.acquire(ctx) {
			return
		}
		wg.Go(func() {
			defer func() { <-pending }()
			defer p.release()
			defer p.recoverPanic("tcp")
			resp := p.resolve(ctx, client, req)
			if resp == nil || ctx.Err() != nil {
				return
			}
			resp.Truncate(dns.MaxMsgSize)
			out, err := resp.Pack()
			if err != nil {
				p.log.Debug("resolver: packing reply failed, replying SERVFAIL",
					"transport", "tcp", "client", client, "err", err)
				if out, err = synth(req, dns.RcodeServerFailure).Pack(); err != nil {
					return
				}
			}
			writeMu.Lock()
			defer writeMu.Unlock()
			c.SetWriteDeadline(time.Now().Add(tcpIdleTimeout))
			if _, err := c.Write(frame(out)); err != nil {
				p.log.Debug("resolver: writing reply failed, closing",
					"transport", "tcp", "client", client, "err", err)
				c.Close() // a partial frame leaves the stream unusable
			}
		})
	}
}

// readFrame reads one length-prefixed DNS message.
func readFrame(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// frame prefixes msg with its length.
func frame(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg))), msg...)
}
