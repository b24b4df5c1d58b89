package transport_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// The inbound check (inbound.go): violations are answered after the replies
// already queued, invalid UTF-8 is found where it arrives, and a close
// frame's reason is checked.

const (
	mask1 = 0x5a6b7c8d
	mask2 = 0x01f2e3d4
)

// next reads the next frame from the server.
func (rc *rawClient) next(t *testing.T) (op byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		t.Fatalf("reading a frame from the server: %v", err)
	}
	n := int(h[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(rc.br, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	} else if n == 127 {
		t.Fatal("unexpectedly large frame from the server")
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(rc.br, payload); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0f, payload
}

// wantCloseFrame reads the next frame and checks it is a close frame with
// code and reason.
func (rc *rawClient) wantCloseFrame(t *testing.T, code transport.StatusCode, reason string) {
	t.Helper()
	op, p := rc.next(t)
	if op != 0x8 || len(p) < 2 {
		t.Fatalf("got frame %#x %q, want a close frame", op, p)
	}
	if got, gotReason := transport.StatusCode(binary.BigEndian.Uint16(p)), string(p[2:]); got != code || gotReason != reason {
		t.Fatalf("got close %d %q, want %d %q", got, gotReason, code, reason)
	}
}

// wantHangUp checks that the server closes the socket without waiting for
// the client's close frame (coder/websocket's closing handshake would wait
// 5 s for it: this client never sends it).
func (rc *rawClient) wantHangUp(t *testing.T) {
	t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(4 * time.Second))
	n, err := io.Copy(io.Discard, rc.br)
	if err != nil {
		t.Fatalf("after the close frame: %v (%d more bytes), want the server to hang up at once", err, n)
	}
	if n != 0 {
		t.Fatalf("%d bytes after the close frame", n)
	}
}

// TestRepliesPrecedeInboundClose: a message arrives, then a violation in the
// same TCP write. The handler's reply to the message, queued after the
// violation was read, reaches the client before the close frame, and the
// server then hangs up without a 5 s wait for the client's close frame.
// (coder/websocket used to write the close frame from its reader at once.)
func TestRepliesPrecedeInboundClose(t *testing.T) {
	cases := []struct {
		name   string
		bad    []byte
		code   transport.StatusCode
		reason string
	}{
		{"reserved bit", []byte{0x80 | 0x20 | 0x1, 0x80}, transport.StatusProtocolError, transport.ReasonProtocol},
		{"unmasked frame", []byte{0x81, 0x01, 'x'}, transport.StatusProtocolError, transport.ReasonProtocol},
		{"stray continuation", transport.EncodeClientFrame(0x80, []byte("x"), mask2), transport.StatusProtocolError, transport.ReasonProtocol},
		{"invalid UTF-8", transport.EncodeClientFrame(0x81, []byte("ok\xff"), mask2),
			transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8},
		{"close reason not UTF-8", transport.EncodeClientFrame(0x88, []byte("\x03\xe8\xff"), mask2),
			transport.StatusInvalidFramePayloadData, transport.ReasonInvalidCloseReason},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, serverConfig{manualRelease: true})
			rc := dialRaw(t, ts)
			sc := recv(t, ts.conns, "the accepted connection")
			rc.write(t, append(transport.EncodeClientFrame(0x81, []byte("hello"), mask1), tc.bad...))
			if f := sc.frame(t); string(f.Data) != "hello" {
				t.Fatalf("delivered %q", f.Data)
			}
			if err := sc.c.Write(websocket.MessageText, []byte("reply to hello")); err != nil {
				t.Fatalf("the reply was refused: %v", err)
			}
			sc.c.Release()
			if op, p := rc.next(t); op != 0x1 || string(p) != "reply to hello" {
				t.Fatalf("first frame from the server: %#x %q, want the reply", op, p)
			}
			rc.wantCloseFrame(t, tc.code, tc.reason)
			rc.wantHangUp(t)
			wantInfo(t, sc.fin(t), tc.code, tc.reason, true)
		})
	}
}

// kosme is Autobahn's "κόσμε", then an invalid sequence (U+110000 encoded in
// four bytes), then "edited".
var kosme = []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64")

const kosmeBad = 11 // offset of 0xf4: the byte after it (0x90) cannot follow it

// TestInvalidUTF8FailsInsideAFrame (Autobahn 6.4.3/6.4.4): the bad bytes
// arrive in the middle of one frame, in their own TCP write; the client
// never sends the rest of the frame and still gets 1007.
func TestInvalidUTF8FailsInsideAFrame(t *testing.T) {
	ts := newServer(t, serverConfig{})
	rc := dialRaw(t, ts)
	sc := recv(t, ts.conns, "the accepted connection")
	frame := transport.EncodeClientFrame(0x81, kosme, mask1)
	head := len(frame) - len(kosme)
	rc.write(t, frame[:head+kosmeBad])
	rc.write(t, frame[head+kosmeBad:head+kosmeBad+4])
	// The rest of the frame is never sent.
	rc.wantCloseFrame(t, transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8)
	rc.wantHangUp(t)
	wantInfo(t, sc.fin(t), transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8, true)
}

// TestInvalidUTF8FailsAtItsFragment (Autobahn 6.4.1/6.4.2): the first
// fragment is valid, the second makes the text invalid, the third never
// comes: the server fails at the second.
func TestInvalidUTF8FailsAtItsFragment(t *testing.T) {
	ts := newServer(t, serverConfig{})
	rc := dialRaw(t, ts)
	sc := recv(t, ts.conns, "the accepted connection")
	rc.write(t, transport.EncodeClientFrame(0x01, kosme[:kosmeBad], mask1))
	rc.write(t, transport.EncodeClientFrame(0x00, kosme[kosmeBad:kosmeBad+4], mask2))
	rc.wantCloseFrame(t, transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8)
	wantInfo(t, sc.fin(t), transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8, true)
	if n := len(sc.frames); n != 0 {
		t.Errorf("%d frames delivered, want none", n)
	}
}

// TestCloseReasonInvalidUTF8 (Autobahn 7.5.1): a close frame whose reason is
// not UTF-8 is answered with 1007, not echoed.
func TestCloseReasonInvalidUTF8(t *testing.T) {
	ts := newServer(t, serverConfig{})
	rc := dialRaw(t, ts)
	sc := recv(t, ts.conns, "the accepted connection")
	rc.write(t, transport.EncodeClientFrame(0x88, append([]byte{0x03, 0xe8}, kosme...), mask1))
	rc.wantCloseFrame(t, transport.StatusInvalidFramePayloadData, transport.ReasonInvalidCloseReason)
	wantInfo(t, sc.fin(t), transport.StatusInvalidFramePayloadData, transport.ReasonInvalidCloseReason, true)
}

// TestEarlyBytesAreChecked: frames sent in the same write as the upgrade
// request (which net/http has already read into its buffer when
// coder/websocket takes over) go through the check too.
func TestEarlyBytesAreChecked(t *testing.T) {
	ts := newServer(t, serverConfig{})
	early := transport.EncodeClientFrame(0x81, []byte("hello"), mask1)
	early = append(early, transport.EncodeClientFrame(0x88, []byte("\x03\xe8\xc0\xaf"), mask2)...)
	rc := dialRawWith(t, ts, early)
	sc := recv(t, ts.conns, "the accepted connection")
	if f := sc.frame(t); string(f.Data) != "hello" {
		t.Fatalf("delivered %q", f.Data)
	}
	rc.wantCloseFrame(t, transport.StatusInvalidFramePayloadData, transport.ReasonInvalidCloseReason)
	wantInfo(t, sc.fin(t), transport.StatusInvalidFramePayloadData, transport.ReasonInvalidCloseReason, true)
}

// TestRunesSplitAcrossFragmentsAndWrites: a text of multi-byte runes, split
// into two fragments at every byte, each stream cut into two TCP writes at
// every byte, is delivered whole.
func TestRunesSplitAcrossFragmentsAndWrites(t *testing.T) {
	ts := newServer(t, serverConfig{})
	rc := dialRaw(t, ts)
	sc := recv(t, ts.conns, "the accepted connection")
	msg := []byte("aé€😀\U0010FFFF")
	for split := 0; split <= len(msg); split++ {
		stream := transport.EncodeClientFrame(0x01, msg[:split], mask1)
		stream = append(stream, transport.EncodeClientFrame(0x80, msg[split:], mask2)...)
		for cut := 1; cut < len(stream); cut++ {
			rc.write(t, stream[:cut])
			rc.write(t, stream[cut:])
			if f := sc.frame(t); !bytes.Equal(f.Data, msg) || f.Type != websocket.MessageText {
				t.Fatalf("split %d, cut %d: delivered %v %q", split, cut, f.Type, f.Data)
			}
		}
	}
	rc.write(t, transport.EncodeClientFrame(0x88, []byte("\x03\xe8bye"), mask1))
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "bye", false)
}

// TestCompressedMessages: with permessage-deflate negotiated, compressed and
// uncompressed messages both arrive (RSV1 is legal on a message's first
// frame), and invalid UTF-8 is still refused with 1007 in either form.
func TestCompressedMessages(t *testing.T) {
	big := strings.Repeat("κόσμε, compressible text; ", 100) // above the 512-byte threshold
	for _, tc := range []struct {
		name string
		bad  []byte
	}{
		{"compressed", append([]byte(big), 0xff)},
		{"uncompressed", []byte("short\xff")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, serverConfig{echo: true, opts: transport.Options{CompressionNoContextTakeover: true}})
			client, sc := ts.dial(t, &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
			for _, m := range []string{big, "short", big} {
				writeMsg(t, client, websocket.MessageText, []byte(m))
				if _, got := readMsg(t, client); string(got) != m {
					t.Fatalf("echo of %d bytes: got %d bytes", len(m), len(got))
				}
			}
			writeMsg(t, client, websocket.MessageText, tc.bad)
			_, err := readClose(t, client)
			if ce := closeErr(t, err); ce.Code != transport.StatusInvalidFramePayloadData || ce.Reason != transport.ReasonInvalidUTF8 {
				t.Errorf("client got close %d %q", ce.Code, ce.Reason)
			}
			wantInfo(t, sc.fin(t), transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8, true)
		})
	}
}

// TestNoDeliveryAfterViolation: messages written after a violation are not
// delivered, even though they were read in the same chunk.
func TestNoDeliveryAfterViolation(t *testing.T) {
	ts := newServer(t, serverConfig{})
	rc := dialRaw(t, ts)
	sc := recv(t, ts.conns, "the accepted connection")
	var b []byte
	b = append(b, transport.EncodeClientFrame(0x81, []byte("before"), mask1)...)
	b = append(b, 0x81|0x20, 0x80) // a reserved bit, then a header the client never finishes
	b = append(b, transport.EncodeClientFrame(0x81, []byte("after"), mask2)...)
	rc.write(t, b)
	rc.wantCloseFrame(t, transport.StatusProtocolError, transport.ReasonProtocol)
	wantInfo(t, sc.fin(t), transport.StatusProtocolError, transport.ReasonProtocol, true)
	if f := sc.frame(t); string(f.Data) != "before" {
		t.Fatalf("delivered %q", f.Data)
	}
	if n := len(sc.frames); n != 0 {
		t.Errorf("%d more frames delivered after the violation", n)
	}
}

// TestInboundCloseBoundedByWriteTimeout: when the handler never releases the
// message before a violation, the connection still ends, after WriteTimeout.
func TestInboundCloseBoundedByWriteTimeout(t *testing.T) {
	ts := newServer(t, serverConfig{manualRelease: true, opts: transport.Options{WriteTimeout: 200 * time.Millisecond}})
	rc := dialRaw(t, ts)
	sc := recv(t, ts.conns, "the accepted connection")
	rc.write(t, append(transport.EncodeClientFrame(0x81, []byte("held"), mask1), 0x83))
	sc.frame(t) // never released
	wantInfo(t, sc.fin(t), transport.StatusProtocolError, transport.ReasonProtocol, true)
	if got := rc.closeCode(t); got != -1 {
		t.Errorf("the client got close code %d, want the socket torn down without one", got)
	}
}
