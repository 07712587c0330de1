package forward

import (
	"context"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseHostForwards(t *testing.T) {
	for _, tc := range []struct {
		specs []string
		want  []HostForward
	}{
		{[]string{"5201"}, []HostForward{{5201, 5201}}},
		{[]string{"8080:80"}, []HostForward{{8080, 80}}},
		{[]string{"1000-1002"}, []HostForward{{1000, 1000}, {1001, 1001}, {1002, 1002}}},
		{[]string{"1000-1001:2000-2001"}, []HostForward{{1000, 2000}, {1001, 2001}}},
		{[]string{"1000-1001:2000"}, []HostForward{{1000, 2000}, {1001, 2001}}},
		{[]string{"22,80:8080", "443"}, []HostForward{{22, 22}, {80, 8080}, {443, 443}}},
	} {
		got, err := ParseHostForwards(tc.specs)
		if err != nil {
			t.Errorf("ParseHostForwards(%q): %v", tc.specs, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseHostForwards(%q) = %v, want %v", tc.specs, got, tc.want)
		}
	}
}

func TestParseHostForwardsErrors(t *testing.T) {
	for _, tc := range []struct {
		specs []string
		want  string
	}{
		{[]string{""}, `invalid -T spec "": port "" is not a number in 1-65535`},
		{[]string{"0"}, `"0" is not a number`},
		{[]string{"70000"}, `"70000" is not a number`},
		{[]string{"80:"}, `port "" is not a number`},
		{[]string{"80-79"}, "runs backwards"},
		{[]string{"1-3:10-11"}, "another length"},
		{[]string{"65530-65535:65534"}, "past 65535"},
		{[]string{"80", "79-81"}, "sandbox port 80 is forwarded twice"},
		{[]string{"a,b"}, `"a" is not a number`},
	} {
		_, err := ParseHostForwards(tc.specs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseHostForwards(%q) = %v, want an error with %q", tc.specs, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), hostForwardForm) && !strings.Contains(err.Error(), "twice") {
			t.Errorf("ParseHostForwards(%q): %v does not show the grammar", tc.specs, err)
		}
	}
}

// TestServeToHost relays a client of the "sandbox" listener to the
// "host" listener on 127.0.0.1, both directions and the half-close, and
// closes a client the host refuses.
func TestServeToHost(t *testing.T) {
	host, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				io.WriteString(c, "got "+string(b))
			}()
		}
	}()
	inside, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		ServeToHost(ctx, inside, uint16(host.Addr().(*net.TCPAddr).Port))
		close(done)
	}()
	c, err := net.Dial("tcp4", inside.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(b) != "got hello" {
		t.Errorf("through the forward: %q, %v; want \"got hello\"", b, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeToHost did not return when its context ended")
	}
	if _, err := net.Dial("tcp4", inside.Addr().String()); err == nil {
		t.Error("the sandbox listener still accepts after ServeToHost returned")
	}
}

func TestServeToHostRefused(t *testing.T) {
	closed, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()
	inside, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeToHost(ctx, inside, port)
	c, err := net.Dial("tcp4", inside.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from a forward whose host port is closed; want the connection closed", n)
	}
}
