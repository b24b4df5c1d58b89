package transport_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// sized is message i of TestWritesTheSocketCannotTakeAtOnceKeepTheirOrder:
// sizes the writing goroutine writes itself until the socket is long full,
// then some it always leaves to the writer goroutine (over a pooled
// buffer), all numbered.
func sized(i int) []byte {
	n := 1 + (i*397)%4000
	if i >= 500 && i%50 == 49 {
		n = 20_000
	}
	head := fmt.Appendf(nil, "%06d:", i)
	return append(head, bytes.Repeat([]byte{byte('a' + i%26)}, n)...)
}

// TestWritesTheSocketCannotTakeAtOnceKeepTheirOrder checks the write on the
// caller's goroutine against a client that reads nothing for a while: the
// socket fills mid-message, the remainder and everything queued after it
// go out through the writer goroutine, and the client gets every message
// whole and in order, answers to its pings meanwhile, and then the close
// frame.
func TestWritesTheSocketCannotTakeAtOnceKeepTheirOrder(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20}})
	client, sc := ts.dial(t, &websocket.DialOptions{HTTPClient: smallBufClient(t)})

	const n = 1000 // about 2.4 MB: the small socket buffers hold about 128 KiB
	for i := range n {
		if err := sc.c.Write(websocket.MessageBinary, sized(i)); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
	if m, _ := sc.c.Queued(); m == 0 {
		t.Fatal("nothing queued: the socket took 2.4 MB that nobody read")
	}
	sc.c.Close(transport.StatusNormalClosure, "done")

	pinged := make(chan error, 1)
	read := make(chan error, 1)
	go func() {
		for i := range n {
			_, b, err := client.Read(t.Context())
			switch {
			case err != nil:
				read <- fmt.Errorf("message %d: %w", i, err)
				return
			case !bytes.Equal(b, sized(i)):
				read <- fmt.Errorf("message %d: got %.7q (%d bytes), want %.7q (%d bytes)", i, b, len(b), sized(i), len(sized(i)))
				return
			}
			if i == 10 {
				go func() { pinged <- client.Ping(t.Context()) }()
			}
		}
		_, _, err := client.Read(t.Context())
		read <- err
	}()
	err := recv(t, read, "the client to read everything")
	if ce := closeErr(t, err); ce.Code != websocket.StatusNormalClosure || ce.Reason != "done" {
		t.Fatalf("after the messages: %v", err)
	}
	if err := recv(t, pinged, "the pong"); err != nil {
		t.Errorf("ping while the server's writes waited: %v", err)
	}
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "done", true)
}
