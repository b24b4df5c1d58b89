package transport_test

import (
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

func TestZZExp(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20, SendQueueMessages: 100000}})
	client, sc := ts.dial(t, nil)
	client.SetReadLimit(-1)
	for range 2000 {
		_ = sc.c.Write(websocket.MessageBinary, make([]byte, 1024))
	}
	waitForWithin(time.Second, func() bool { return false })
	m, b := sc.c.Queued()
	t.Logf("capacity: %d KiB (queued %d)", (2000*1024-b)/1024, m)
	start := time.Now()
	for range 2000 {
		mustRead(t, client)
	}
	t.Logf("read 2MB in %v", time.Since(start))
}
