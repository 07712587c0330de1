//go:build linux

package relay

import (
	"bytes"
	"io"
	"testing"
)

// askingReader serves n bytes and remembers the largest buffer it was
// asked to fill: the copy buffer in use.
type askingReader struct {
	left    int
	largest int
}

func (r *askingReader) Read(p []byte) (int, error) {
	r.largest = max(r.largest, len(p))
	if r.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.left)
	clear(p[:n])
	r.left -= n
	return n, nil
}

// TestCopyPooledBulk: a flow that fills the small buffer moves to the bulk
// one, unless told not to (TCPSmall), and both copy every byte.
func TestCopyPooledBulk(t *testing.T) {
	for _, c := range []struct {
		bulk    bool
		largest int
	}{{true, bulkBufSize}, {false, smallBufSize}} {
		src := &askingReader{left: 8 << 20}
		var dst bytes.Buffer
		n, err := copyPooled(&dst, src, c.bulk)
		if err != nil || n != 8<<20 || dst.Len() != 8<<20 {
			t.Fatalf("bulk %v: copied %d (%d written), %v; want %d", c.bulk, n, dst.Len(), err, 8<<20)
		}
		if src.largest != c.largest {
			t.Errorf("bulk %v: read with buffers up to %d bytes; want %d", c.bulk, src.largest, c.largest)
		}
	}
}
