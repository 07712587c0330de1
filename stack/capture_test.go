package stack

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"
)

type failingWriter struct{ n int }

func (f *failingWriter) Write(b []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

// TestCaptureWriter: the file header passes, records of IP packets pass,
// anything else (ARP) is left out, and a failing file stops the capture
// without an error reaching the sniffer (which would panic).
func TestCaptureWriter(t *testing.T) {
	var buf bytes.Buffer
	c := &captureWriter{w: &buf, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	header := make([]byte, 24)
	rec := func(first byte) []byte { return append(make([]byte, pcapRecordHeader), first, 0, 0, 0) }
	for _, b := range [][]byte{header, rec(0x45), rec(0x00), rec(0x60)} {
		if n, err := c.Write(b); err != nil || n != len(b) {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if want := 24 + 2*(pcapRecordHeader+4); buf.Len() != want {
		t.Errorf("wrote %d bytes; want %d (the header and the two IP records)", buf.Len(), want)
	}
	f := &failingWriter{}
	c = &captureWriter{w: f, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for i := 0; i < 3; i++ {
		if _, err := c.Write(header); err != nil {
			t.Fatalf("an error reached the sniffer: %v", err)
		}
	}
	if f.n != 1 {
		t.Errorf("after a failure the capture went on writing (%d writes)", f.n)
	}
}
