package transport_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor/transport"
)

// rawClient is a WebSocket client that writes frames byte by byte, to break
// the protocol in ways no client library would.
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, ts *testServer) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	req := "GET / HTTP/1.1\r\nHost: " + c.RemoteAddr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return &rawClient{c: c, br: br}
}

// frame writes one frame: b0 is the FIN/RSV/opcode byte; the payload is
// masked (with a zero key, which leaves it as it is) unless unmasked.
func (rc *rawClient) frame(t *testing.T, b0 byte, payload []byte, unmasked bool) {
	t.Helper()
	if len(payload) > 125 {
		t.Fatal("raw frames carry at most 125 bytes")
	}
	b1 := byte(len(payload))
	out := []byte{b0}
	if unmasked {
		out = append(out, b1)
	} else {
		out = append(out, b1|0x80, 0, 0, 0, 0)
	}
	out = append(out, payload...)
	if _, err := rc.c.Write(out); err != nil {
		t.Fatal(err)
	}
}

// closeCode reads frames until a close frame and returns its code, or -1
// when the connection ends without one.
func (rc *rawClient) closeCode(t *testing.T) int {
	t.Helper()
	for {
		var h [2]byte
		if _, err := io.ReadFull(rc.br, h[:]); err != nil {
			return -1
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var ext [2]byte
			if _, err := io.ReadFull(rc.br, ext[:]); err != nil {
				return -1
			}
			n = int(binary.BigEndian.Uint16(ext[:]))
		case 127:
			t.Fatal("unexpectedly large frame from the server")
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(rc.br, payload); err != nil {
			return -1
		}
		if h[0]&0x0f == 0x8 && n >= 2 {
			return int(binary.BigEndian.Uint16(payload))
		}
	}
}

// TestProtocolErrors: a client that breaks the framing protocol gets 1002
// (but for an unmasked frame, which coder/websocket drops without a close
// frame), and the connection is reported finished with 1002 "protocol
// error", not as a lost connection. It also pins down how the transport
// recognises coder/websocket's untyped protocol errors.
func TestProtocolErrors(t *testing.T) {
	const (
		fin    = 0x80
		rsv2   = 0x20
		opText = 0x1
		opCont = 0x0
		opPing = 0x9
		opBad  = 0x3 // reserved non-control opcode
	)
	cases := []struct {
		name     string
		b0       byte
		payload  []byte
		unmasked bool
		wantSent int
	}{
		{"reserved bit", fin | rsv2 | opText, []byte("x"), false, 1002},
		{"unknown opcode", fin | opBad, nil, false, 1002},
		{"continuation first", fin | opCont, []byte("x"), false, 1002},
		{"fragmented ping", opPing, nil, false, 1002},
		{"close with a one-byte payload", fin | 0x8, []byte{3}, false, 1002},
		{"unmasked frame", fin | opText, []byte("x"), true, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, serverConfig{})
			rc := dialRaw(t, ts)
			sc := recv(t, ts.conns, "the accepted connection")
			rc.frame(t, fin|opText, []byte("fine"), false)
			if f := sc.frame(t); string(f.Data) != "fine" {
				t.Fatalf("first frame = %q", f.Data)
			}
			rc.frame(t, tc.b0, tc.payload, tc.unmasked)
			if got := rc.closeCode(t); got != tc.wantSent {
				t.Errorf("the client got close code %d, want %d", got, tc.wantSent)
			}
			wantInfo(t, sc.fin(t), transport.StatusProtocolError, transport.ReasonProtocol, true)
		})
	}
}
