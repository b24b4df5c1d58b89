package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// echoUnderChurn runs clients against an echoing server, each sending
// messages of random sizes (a few bytes to past the pooled buffer's 4 KiB),
// some in bursts, with pings of its own in between and the server's heartbeat
// pinging every few milliseconds, and waits for every echo in order. A
// message left waiting in a buffer while the reader waits for the socket
// (buffers.go) would hold up its connection's last echo past the deadline.
func echoUnderChurn(t *testing.T, ts *testServer) {
	const clients, messages = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c, _ := ts.dial(t, nil)
		c.SetReadLimit(1 << 20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.CloseNow()
			errs <- churn(c, uint64(i), messages)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func churn(c *websocket.Conn, seed uint64, messages int) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	rng := rand.New(rand.NewPCG(seed, 7))
	echoes := make(chan []byte, messages)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				readErr <- err
				return
			}
			echoes <- b
		}
	}()
	for i := 0; i < messages; {
		burst := 1 + rng.IntN(4)
		var sent [][]byte
		for ; burst > 0 && i < messages; burst-- {
			size := []int{1, 10, 125, 126, 1000, 4095, 4096, 9000}[rng.IntN(8)]
			b := make([]byte, size)
			b[0] = byte(i)
			if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
				return fmt.Errorf("client %d, message %d: write: %w", seed, i, err)
			}
			sent = append(sent, b)
			i++
		}
		if rng.IntN(3) == 0 {
			if err := c.Ping(ctx); err != nil {
				return fmt.Errorf("client %d: ping: %w", seed, err)
			}
		}
		for _, want := range sent {
			select {
			case got := <-echoes:
				if !bytes.Equal(got, want) {
					return fmt.Errorf("client %d: echo of %d bytes came back as %d bytes (first %d, want %d)", seed, len(want), len(got), got[0], want[0])
				}
			case err := <-readErr:
				return fmt.Errorf("client %d: read: %w", seed, err)
			}
		}
	}
	return nil
}

// TestEchoUnderChurn: on plain TCP the reader waits for the socket without a
// buffer (socket_unix.go) and, between messages, outside coder/websocket.
func TestEchoUnderChurn(t *testing.T) {
	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{
		MaxMessageSize: 1 << 20, PingInterval: 5 * time.Millisecond,
		RateLimit: transport.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}}})
	echoUnderChurn(t, ts)
}

// TestEchoUnderChurnWrappedSocket: a socket that is not a syscall.Conn (TLS,
// a listener's wrapper) is read the plain way, through the pooled buffer.
func TestEchoUnderChurnWrappedSocket(t *testing.T) {
	ts := newServerWithListener(t, serverConfig{echo: true, opts: transport.Options{
		MaxMessageSize: 1 << 20, PingInterval: 5 * time.Millisecond,
		RateLimit: transport.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}}},
		func(l net.Listener) net.Listener { return opaqueListener{l} })
	echoUnderChurn(t, ts)
}

// opaqueListener hides its connections' SyscallConn.
type opaqueListener struct{ net.Listener }

type opaqueConn struct{ net.Conn }

func (l opaqueListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return opaqueConn{c}, nil
}

// TestIdleConnectionHoldsNoBuffer: once its messages are read and written, a
// connection gives its pooled buffers back (buffers.go), whatever the sizes.
func TestIdleConnectionHoldsNoBuffer(t *testing.T) {
	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{MaxMessageSize: 1 << 20}})
	c, sc := ts.dial(t, nil)
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for _, size := range []int{1, 200, 4096, 70000} {
		writeMsg(t, c, websocket.MessageBinary, make([]byte, size))
		if _, b := readMsg(t, c); len(b) != size {
			t.Fatalf("echo of %d bytes came back with %d", size, len(b))
		}
		eventually(t, "the buffers given back", func() bool {
			r, w := transport.HeldBuffers(sc.c)
			return !r && !w
		})
	}
}
