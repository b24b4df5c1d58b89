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
	return dialRawWith(t, ts, nil)
}

// dialRawWith sends early right behind the upgrade request, in the same
// write, as a client that does not wait for the response would.
func dialRawWith(t *testing.T, ts *testServer, early []byte) *rawClient {
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
	if _, err := c.Write(append([]byte(req), early...)); err != nil {
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

// write sends raw bytes.
func (rc *rawClient) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := rc.c.Write(b); err != nil {
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

// TestProtocolErrors: a client that breaks the framing protocol gets 1002,
// and the connection is reported finished with 1002 "protocol error", not as
// a lost connection. Every violation is found by the inbound check before
// coder/websocket parses it (an unmasked frame used to be dropped without a
// close frame, a negative 64-bit length reported as a lost connection).
func TestProtocolErrors(t *testing.T) {
	const (
		fin    = 0x80
		rsv1   = 0x40
		rsv2   = 0x20
		opText = 0x1
		opBin  = 0x2
		opCont = 0x0
		opPing = 0x9
		opBad  = 0x3 // reserved non-control opcode
	)
	cases := []struct {
		name     string
		b0       byte
		payload  []byte
		unmasked bool
		raw      []byte // sent instead of b0/payload when set
	}{
		{name: "reserved bit", b0: fin | rsv2 | opText, payload: []byte("x")},
		{name: "RSV1 without compression", b0: fin | rsv1 | opBin, payload: []byte("x")},
		{name: "unknown opcode", b0: fin | opBad},
		{name: "continuation first", b0: fin | opCont, payload: []byte("x")},
		{name: "fragmented ping", b0: opPing},
		{name: "close with a one-byte payload", b0: fin | 0x8, payload: []byte{3}},
		{name: "close code 1005", b0: fin | 0x8, payload: []byte{0x03, 0xed}},
		{name: "close code 2999", b0: fin | 0x8, payload: []byte{0x0b, 0xb7}},
		{name: "unmasked frame", b0: fin | opText, payload: []byte("x"), unmasked: true},
		{name: "ping longer than 125 bytes", raw: append([]byte{fin | opPing, 0x80 | 126, 0, 126, 0, 0, 0, 0}, make([]byte, 126)...)},
		{name: "negative 64-bit length", raw: []byte{fin | opBin, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}},
		{name: "new message inside a fragmented one", raw: []byte{opText, 0x81, 0, 0, 0, 0, 'a', fin | opText, 0x81, 0, 0, 0, 0, 'b'}},
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
			if tc.raw != nil {
				rc.write(t, tc.raw)
			} else {
				rc.frame(t, tc.b0, tc.payload, tc.unmasked)
			}
			if got := rc.closeCode(t); got != 1002 {
				t.Errorf("the client got close code %d, want 1002", got)
			}
			wantInfo(t, sc.fin(t), transport.StatusProtocolError, transport.ReasonProtocol, true)
		})
	}
}
