package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
)

// The inbound check runs over the client's bytes as they arrive, ahead of
// coder/websocket, which keeps the protocol. It exists for three things
// coder/websocket's read path does not do:
//
//   - On a protocol violation coder/websocket writes 1002 itself, from its
//     reader, the moment it parses the bad frame, so a reply the handler has
//     queued for an earlier message is lost. Seen here first, the violation
//     becomes a read error, and the read loop closes with Close, after the
//     replies (see Conn.failInbound).
//   - It echoes a close frame whose reason is not UTF-8; RFC 6455 wants 1007.
//   - It finds invalid UTF-8 in a text message only once the whole message is
//     read; here it is found at the first byte that cannot belong to valid
//     UTF-8, in whichever frame and read it arrives.
//
// The check sees exactly the bytes coder/websocket reads: a violation hands
// it the bytes before the bad one, then a sticky error. It never changes a
// byte. Its state is a few words and it allocates nothing per frame.

// inboundConn is the net.Conn coder/websocket reads: the hijacked socket
// with the check on its Read. It also buffers the socket (buffers.go): bytes
// read ahead of coder/websocket wait in a pooled buffer, which goes back to
// the pool once drained.
type inboundConn struct {
	net.Conn
	fc      frameChecker
	failure atomic.Pointer[inboundError] // set once; read by the read loop
	sock    socketReader                 // reads the socket, waiting without a buffer where it can
	// closing is set before the writer's closing handshake, in which
	// coder/websocket reads on the writer goroutine: from then on Read
	// waits for bytes itself rather than answering errPark.
	closing atomic.Bool
	// onReadable is readable as a func value, for the poller; the read
	// loop's only.
	onReadable func(fd uintptr) bool

	// mu guards the fields below. The reader goroutine reads, except during
	// the closing handshake; await holds mu only to read, not to wait.
	mu sync.Mutex
	// early holds what net/http had read past the upgrade request; it is
	// checked and handed over before anything from the socket.
	early   []byte
	buf     *[ioBufSize]byte // pooled; nil when nothing is read ahead
	r, w    int              // buf[r:w] is read ahead
	sockErr error            // the socket's error, handed over once buf is drained
}

// errPark is what inboundConn.Read answers when coder/websocket, between
// messages, asks the read loop for bytes that have not arrived: the read loop
// then waits for them itself (await), on a shallow stack, instead of deep
// inside coder/websocket. coder/websocket v1.8.15 passes an error from
// between frames up from Conn.Read without closing the connection or losing
// its state (read.go, Conn.reader); TestParkAfterControlFrames pins this.
var errPark = errors.New("wsactor/transport: nothing to read yet")

// inboundError is the sticky error of a stream that broke the protocol or
// carried invalid UTF-8. It is not a CloseError: coder/websocket must not
// take it for a close frame from the client.
type inboundError struct {
	code   StatusCode
	reason string // the close frame's reason: one of the Reason constants
	detail string
}

func (e *inboundError) Error() string { return "wsactor/transport: inbound: " + e.detail }

// newInboundConn wraps conn, which reads raw. brw is net/http's buffered
// reader of the hijacked connection: the bytes it holds are moved in front
// of the check.
func newInboundConn(conn *watchedConn, raw net.Conn, brw *bufio.ReadWriter, deflate bool) *inboundConn {
	ic := &inboundConn{Conn: conn, sock: newSocketReader(raw, conn.raw)}
	ic.fc.deflate = deflate
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		ic.early = bytes.Clone(b)
	}
	return ic
}

// Read hands over what is read ahead, or reads the socket, and checks it.
func (ic *inboundConn) Read(p []byte) (int, error) {
	if e := ic.failure.Load(); e != nil {
		return 0, e
	}
	if len(p) == 0 {
		return 0, nil
	}
	ic.mu.Lock()
	defer ic.mu.Unlock()
	var n int
	var err error
	switch {
	case len(ic.early) > 0:
		p = ic.fc.clip(p)
		n = copy(p, ic.early)
		ic.early = ic.early[n:]
		if len(ic.early) == 0 {
			ic.early = nil
		}
	case ic.buf != nil:
		n = ic.take(ic.fc.clip(p))
	case ic.sockErr != nil:
		return 0, ic.sockErr
	case ic.sock.parks() && ic.fc.betweenMessages() && !ic.closing.Load():
		return 0, errPark
	case len(ic.fc.clip(p)) >= ioBufSize:
		p = ic.fc.clip(p)
		n, err = ic.sock.read(p) // a large payload: straight into coder/websocket's buffer
	default:
		if ic.fill(); ic.buf != nil {
			p = ic.fc.clip(p)
			n = ic.take(p)
		} else {
			err = ic.sockErr
		}
	}
	if n > 0 {
		if ok, e := ic.fc.check(p[:n]); e != nil {
			ic.failure.Store(e)
			return ok, e
		}
	}
	return n, err
}

// fill reads the socket into a pooled buffer, waiting for bytes; ic.mu is
// held. An error is kept for Read.
func (ic *inboundConn) fill() {
	b, n, err := ic.sock.readPooled()
	if n > 0 {
		ic.buf, ic.r, ic.w = b, 0, n
	}
	if err != nil {
		ic.sockErr = err
	}
}

// take copies read-ahead bytes into p and gives the buffer back once empty.
func (ic *inboundConn) take(p []byte) int {
	n := copy(p, ic.buf[ic.r:ic.w])
	ic.r += n
	if ic.r == ic.w {
		putIOBuf(ic.buf)
		ic.buf = nil
	}
	return n
}

// await is where an idle connection's reader waits for the client: on a
// shallow stack, which stays at the minimum size (2 KiB) once the read loop
// has handed over to a fresh goroutine (see Conn.readLoop), and without a
// buffer. It returns at once if bytes are read ahead, and when another
// goroutine (the closing handshake's) reads.
func (ic *inboundConn) await() {
	if !ic.sock.parks() || ic.closing.Load() {
		return
	}
	ic.mu.Lock()
	ready := len(ic.early) > 0 || ic.buf != nil || ic.sockErr != nil
	ic.mu.Unlock()
	if ready {
		return
	}
	if ic.onReadable == nil {
		ic.onReadable = ic.readable // made once: a closure per wait would be an allocation per message
	}
	if err := ic.sock.poll(ic.onReadable); err != nil {
		ic.mu.Lock()
		if ic.sockErr == nil {
			ic.sockErr = err
		}
		ic.mu.Unlock()
	}
}

// readable runs in await when the socket may have bytes: it reads them into
// a pooled buffer and reports whether the wait is over.
func (ic *inboundConn) readable(fd uintptr) bool {
	if !ic.mu.TryLock() {
		return true // the closing handshake reads
	}
	defer ic.mu.Unlock()
	b, n, err, again := ic.sock.tryReadPooled(fd)
	if n > 0 {
		ic.buf, ic.r, ic.w = b, 0, n
	}
	if err != nil {
		ic.sockErr = err
	}
	return !again
}

// release gives the read-ahead buffer back once the read loop reads no more.
func (ic *inboundConn) release() {
	ic.mu.Lock()
	if ic.buf != nil {
		putIOBuf(ic.buf)
		ic.buf = nil
	}
	ic.mu.Unlock()
}

// failed returns the violation the check found, or nil.
func (ic *inboundConn) failed() *inboundError {
	if ic == nil {
		return nil
	}
	return ic.failure.Load()
}

// Where the next byte belongs.
const (
	stB0      = iota // first header byte: FIN, RSV1-3, opcode
	stB1             // second header byte: MASK, 7-bit length
	stLen            // extended length (need bytes left)
	stMask           // masking key (need bytes left)
	stPayload        // payload (left bytes left)
)

// What data message is in progress.
const (
	msgNone       = iota
	msgText       // text, uncompressed: its UTF-8 is checked
	msgCompressed // compressed (RSV1): checked after inflating, by the read loop
	msgBinary
)

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// frameChecker parses the client→server byte stream incrementally.
type frameChecker struct {
	deflate   bool   // permessage-deflate negotiated: RSV1 may start a data message
	step      uint8  // stB0 … stPayload
	need      uint8  // bytes left of the extended length or the masking key
	b0        byte   // the current frame's first byte
	msg       uint8  // msgNone … msgBinary
	text      uint8  // UTF-8 state of the text message in progress (across its frames)
	reason    uint8  // UTF-8 state of the close frame's reason
	closeRead uint8  // close payload bytes read, up to the 2 of the code
	closeCode uint16 // the close code as far as read
	mask      uint32 // masking key, rotated so its low byte masks the next payload byte
	left      uint64 // payload bytes left in the frame; the length so far while reading it
}

// Protocol violations, each closing with 1002 "protocol error".
var (
	errReservedBits     = protocolViolation("a reserved bit is set")
	errUnknownOpcode    = protocolViolation("unknown opcode")
	errFragmentedCtl    = protocolViolation("fragmented control frame")
	errLongControl      = protocolViolation("control frame longer than 125 bytes")
	errStrayCont        = protocolViolation("continuation frame without a message in progress")
	errNewInFragmented  = protocolViolation("new data frame inside a fragmented message")
	errUnmasked         = protocolViolation("unmasked frame from the client")
	errHugeLength       = protocolViolation("payload length with its most significant bit set")
	errOneByteClose     = protocolViolation("close payload of one byte")
	errInvalidCloseCode = protocolViolation("close code that may not be sent")

	errTextUTF8 = &inboundError{code: StatusInvalidFramePayloadData, reason: ReasonInvalidUTF8,
		detail: "invalid UTF-8 in text message"}
	errReasonUTF8 = &inboundError{code: StatusInvalidFramePayloadData, reason: ReasonInvalidCloseReason,
		detail: "invalid UTF-8 in close reason"}
)

func protocolViolation(detail string) *inboundError {
	return &inboundError{code: StatusProtocolError, reason: ReasonProtocol, detail: detail}
}

// check consumes p. On a violation it returns the number of bytes before
// the offending one and the violation; the checker must not be used again.
func (f *frameChecker) check(p []byte) (int, *inboundError) {
	i := 0
	for i < len(p) {
		if f.step == stPayload {
			n := len(p) - i
			if uint64(n) > f.left {
				n = int(f.left)
			}
			if bad, e := f.payload(p[i : i+n]); e != nil {
				return i + bad, e
			}
			f.left -= uint64(n)
			i += n
			if f.left == 0 {
				if e := f.frameEnd(); e != nil {
					return i - 1, e
				}
			}
			continue
		}
		if e := f.header(p[i]); e != nil {
			return i, e
		}
		i++
	}
	return len(p), nil
}

// clip shortens p to the bytes left in the current frame (as far as they are
// known), so that coder/websocket's bufio.Reader never holds bytes of the
// next frame: once it has read a message, every byte past it waits here, and
// the read loop can tell from inboundConn alone whether it must wait.
func (f *frameChecker) clip(p []byte) []byte {
	var n uint64
	switch f.step {
	case stB0:
		n = 2
	case stB1:
		n = 1
	case stLen:
		n = uint64(f.need)
	case stMask:
		n = uint64(f.need) + f.left
	case stPayload:
		n = f.left
	}
	if uint64(len(p)) > n {
		return p[:n]
	}
	return p
}

// betweenMessages reports whether the stream is at a frame boundary with no
// data message in progress: whatever comes next starts a frame of its own.
func (f *frameChecker) betweenMessages() bool { return f.step == stB0 && f.msg == msgNone }

// header consumes one header byte.
func (f *frameChecker) header(b byte) *inboundError {
	switch f.step {
	case stB0:
		return f.first(b)
	case stB1:
		if b&0x80 == 0 {
			return errUnmasked
		}
		n := b & 0x7f
		op := f.b0 & 0x0f
		if op >= opClose {
			if n > 125 {
				return errLongControl
			}
			if op == opClose && n == 1 {
				return errOneByteClose
			}
		}
		switch n {
		case 126:
			f.step, f.need = stLen, 2
		case 127:
			f.step, f.need = stLen, 8
		default:
			f.left = uint64(n)
			f.step, f.need = stMask, 4
		}
	case stLen:
		if f.need == 8 && b&0x80 != 0 {
			return errHugeLength
		}
		f.left = f.left<<8 | uint64(b)
		f.need--
		if f.need == 0 {
			f.step, f.need = stMask, 4
		}
	case stMask:
		f.mask |= uint32(b) << (8 * (4 - f.need))
		f.need--
		if f.need == 0 {
			if f.left == 0 {
				return f.frameEnd()
			}
			f.step = stPayload
		}
	}
	return nil
}

// first checks a frame's first byte against the message in progress.
func (f *frameChecker) first(b byte) *inboundError {
	fin, rsv1, op := b&0x80 != 0, b&0x40 != 0, b&0x0f
	if b&0x30 != 0 || rsv1 && !(f.deflate && (op == opText || op == opBinary)) {
		return errReservedBits
	}
	switch op {
	case opContinuation:
		if f.msg == msgNone {
			return errStrayCont
		}
	case opText, opBinary:
		if f.msg != msgNone {
			return errNewInFragmented
		}
		switch {
		case rsv1:
			f.msg = msgCompressed
		case op == opText:
			f.msg, f.text = msgText, utf8Accept
		default:
			f.msg = msgBinary
		}
	case opClose:
		if !fin {
			return errFragmentedCtl
		}
		f.reason, f.closeRead, f.closeCode = utf8Accept, 0, 0
	case opPing, opPong:
		if !fin {
			return errFragmentedCtl
		}
	default:
		return errUnknownOpcode
	}
	f.b0 = b
	f.step, f.left, f.mask = stB1, 0, 0
	return nil
}

// frameEnd runs when the frame's last byte has been consumed.
func (f *frameChecker) frameEnd() *inboundError {
	f.step = stB0
	op := f.b0 & 0x0f
	switch {
	case op == opClose:
		if f.reason != utf8Accept {
			return errReasonUTF8 // the reason ends inside a sequence
		}
	case op >= opClose:
	case f.b0&0x80 != 0: // the last frame of a data message
		if f.msg == msgText && f.text != utf8Accept {
			return errTextUTF8 // the message ends inside a sequence
		}
		f.msg = msgNone
	}
	return nil
}

// payload checks p, the next payload bytes of the current frame, and
// returns the offset of the offending byte on a violation.
func (f *frameChecker) payload(p []byte) (int, *inboundError) {
	op := f.b0 & 0x0f
	switch {
	case op == opClose:
		return f.closePayload(p)
	case op < opClose && f.msg == msgText:
		s, bad := validUTF8Masked(f.text, p, f.mask)
		f.text = s
		if bad >= 0 {
			return bad, errTextUTF8
		}
	}
	f.mask = bits.RotateLeft32(f.mask, -8*(len(p)&3))
	return 0, nil
}

// closePayload checks the code and the reason of a close frame (at most
// 125 bytes, so byte by byte).
func (f *frameChecker) closePayload(p []byte) (int, *inboundError) {
	for i, c := range p {
		c ^= byte(f.mask)
		f.mask = bits.RotateLeft32(f.mask, -8)
		if f.closeRead < 2 {
			f.closeCode = f.closeCode<<8 | uint16(c)
			f.closeRead++
			if f.closeRead == 2 && !wireCloseCode(f.closeCode) {
				return i, errInvalidCloseCode
			}
			continue
		}
		if f.reason = utf8Step(f.reason, c); f.reason == utf8Reject {
			return i, errReasonUTF8
		}
	}
	return 0, nil
}

// wireCloseCode reports whether a client may send code in a close frame
// (RFC 6455, section 7.4; the same set coder/websocket accepts).
func wireCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// A streaming UTF-8 validator (RFC 3629, the well-formed byte sequences of
// Unicode's table 3-7) as a small state machine: the state says what the
// next byte may be. utf8Accept is "between characters".
const (
	utf8Accept  = iota
	utf8Cont1   // one continuation byte 80–BF left
	utf8Cont2   // two left
	utf8Cont3   // three left
	utf8AfterE0 // A0–BF, then one more (no overlong 3-byte forms)
	utf8AfterED // 80–9F, then one more (no surrogates)
	utf8AfterF0 // 90–BF, then two more (no overlong 4-byte forms)
	utf8AfterF4 // 80–8F, then two more (nothing above U+10FFFF)
	utf8Reject
)

// utf8Lead is the state after a first byte.
var utf8Lead = func() (t [256]uint8) {
	for b := range t {
		switch {
		case b < 0x80:
			t[b] = utf8Accept
		case b >= 0xC2 && b <= 0xDF:
			t[b] = utf8Cont1
		case b == 0xE0:
			t[b] = utf8AfterE0
		case b == 0xED:
			t[b] = utf8AfterED
		case b >= 0xE1 && b <= 0xEF:
			t[b] = utf8Cont2
		case b == 0xF0:
			t[b] = utf8AfterF0
		case b >= 0xF1 && b <= 0xF3:
			t[b] = utf8Cont3
		case b == 0xF4:
			t[b] = utf8AfterF4
		default: // a stray continuation byte, C0/C1 (overlong) or F5–FF
			t[b] = utf8Reject
		}
	}
	return t
}()

// The byte range each state inside a character allows, and the state after it.
var (
	utf8Lo   = [utf8Reject]byte{utf8Cont1: 0x80, utf8Cont2: 0x80, utf8Cont3: 0x80, utf8AfterE0: 0xA0, utf8AfterED: 0x80, utf8AfterF0: 0x90, utf8AfterF4: 0x80}
	utf8Hi   = [utf8Reject]byte{utf8Cont1: 0xBF, utf8Cont2: 0xBF, utf8Cont3: 0xBF, utf8AfterE0: 0xBF, utf8AfterED: 0x9F, utf8AfterF0: 0xBF, utf8AfterF4: 0x8F}
	utf8Next = [utf8Reject]uint8{utf8Cont1: utf8Accept, utf8Cont2: utf8Cont1, utf8Cont3: utf8Cont2, utf8AfterE0: utf8Cont1, utf8AfterED: utf8Cont1, utf8AfterF0: utf8Cont2, utf8AfterF4: utf8Cont2}
)

// utf8Step returns the state after byte c.
func utf8Step(s uint8, c byte) uint8 {
	if s == utf8Accept {
		return utf8Lead[c]
	}
	if c < utf8Lo[s] || c > utf8Hi[s] {
		return utf8Reject
	}
	return utf8Next[s]
}

// validUTF8Masked runs the validator from state s over p, whose bytes are
// masked with key (its low byte masks p[0]). It returns the state after p,
// and the offset of the first byte that cannot belong to valid UTF-8, or -1.
// Runs of ASCII are checked (and unmasked, in a register) 8 bytes at a time.
func validUTF8Masked(s uint8, p []byte, key uint32) (uint8, int) {
	key64 := uint64(key) | uint64(key)<<32
	i := 0
	for i < len(p) {
		if s == utf8Accept && len(p)-i >= 8 {
			k := bits.RotateLeft64(key64, -8*(i&3))
			for len(p)-i >= 8 && (binary.LittleEndian.Uint64(p[i:])^k)&0x8080808080808080 == 0 {
				i += 8
			}
			if i == len(p) {
				break
			}
		}
		c := p[i] ^ byte(key>>(8*(i&3)))
		if s = utf8Step(s, c); s == utf8Reject {
			return s, i
		}
		i++
	}
	return s, -1
}
