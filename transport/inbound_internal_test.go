package transport

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// encodeFrame returns a client frame: b0 (FIN, RSV, opcode), then the
// payload masked with key (whose low byte masks the first payload byte).
func encodeFrame(b0 byte, payload []byte, key uint32) []byte {
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	out = binary.LittleEndian.AppendUint32(out, key)
	for i, c := range payload {
		out = append(out, c^byte(key>>(8*(i&3))))
	}
	return out
}

// runChecker feeds stream to a fresh checker in the given chunk sizes (the
// rest in one go) and returns the stream offset of the violation, or -1.
func runChecker(stream []byte, deflate bool, chunks ...int) (int, *inboundError) {
	f := frameChecker{deflate: deflate}
	off := 0
	for off < len(stream) {
		n := len(stream) - off
		if len(chunks) > 0 {
			n = min(n, chunks[0])
			chunks = chunks[1:]
		}
		if ok, e := f.check(stream[off : off+n]); e != nil {
			return off + ok, e
		}
		off += n
	}
	return -1, nil
}

// TestUTF8StepExhaustive compares the streaming validator with utf8.Valid on
// every sequence of one to three bytes and on random four-byte ones.
func TestUTF8StepExhaustive(t *testing.T) {
	run := func(b []byte) bool {
		s := uint8(utf8Accept)
		for _, c := range b {
			if s = utf8Step(s, c); s == utf8Reject {
				return false
			}
		}
		return s == utf8Accept
	}
	var b [4]byte
	for n := 1; n <= 3; n++ {
		for v := range 1 << (8 * n) {
			for i := range n {
				b[i] = byte(v >> (8 * i))
			}
			if got, want := run(b[:n]), utf8.Valid(b[:n]); got != want {
				t.Fatalf("% x: validator says %v, utf8.Valid %v", b[:n], got, want)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		binary.LittleEndian.PutUint32(b[:], r.Uint32()|0x80808080&r.Uint32())
		if got, want := run(b[:]), utf8.Valid(b[:]); got != want {
			t.Fatalf("% x: validator says %v, utf8.Valid %v", b[:], got, want)
		}
	}
}

// firstBad is the reference for where a message stops being valid UTF-8:
// the index of the first byte after which no continuation could make the
// prefix valid, or the last byte when the message ends inside a sequence,
// or -1 for a valid message. It uses only utf8.Valid.
func firstBad(msg []byte) int {
	if utf8.Valid(msg) {
		return -1
	}
	for k := 1; k <= len(msg); k++ {
		if !validPrefix(msg[:k]) {
			return k - 1
		}
	}
	return len(msg) - 1
}

// validPrefix reports whether some completion (at most 3 bytes; these four
// values meet every constraint on a continuation byte) makes p valid.
func validPrefix(p []byte) bool {
	if utf8.Valid(p) {
		return true
	}
	conts := []byte{0x80, 0x90, 0xA0, 0xBF}
	var try func(q []byte, left int) bool
	try = func(q []byte, left int) bool {
		if utf8.Valid(q) {
			return true
		}
		if left == 0 {
			return false
		}
		for _, c := range conts {
			if try(append(q[:len(q):len(q)], c), left-1) {
				return true
			}
		}
		return false
	}
	return try(p, 3)
}

// randomText returns up to n bytes mixing ASCII runs, runes of every length
// (including the edges of each range) and, if bad, stray bytes that break
// UTF-8 (lone continuations, overlongs, surrogates, truncated sequences).
func randomText(r *rand.Rand, n int, bad bool) []byte {
	edges := []rune{0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff, 'é', '€', '😀'}
	invalid := [][]byte{{0x80}, {0xbf}, {0xc0, 0x80}, {0xc1, 0xbf}, {0xe0, 0x80, 0x80}, {0xed, 0xa0, 0x80},
		{0xf0, 0x80, 0x80, 0x80}, {0xf4, 0x90, 0x80, 0x80}, {0xf5}, {0xff}, {0xe2, 0x82}, {0xf0, 0x9f, 0x98}, {0xce}}
	var out []byte
	for len(out) < n {
		switch k := r.IntN(10); {
		case k < 4:
			for range r.IntN(20) + 1 {
				out = append(out, byte(0x20+r.IntN(0x5f)))
			}
		case k < 6:
			out = utf8.AppendRune(out, edges[r.IntN(len(edges))])
		case k < 9:
			out = utf8.AppendRune(out, rune(r.IntN(0x110000-0x800)+0x800)) // surrogates become U+FFFD
		case bad:
			out = append(out, invalid[r.IntN(len(invalid))]...)
		}
	}
	return out
}

// TestCheckerUTF8Property: random text messages, valid and not, split into
// random fragments, masked with random keys, with pings between fragments,
// fed to the checker in random chunks. The checker fails exactly for the
// messages utf8.Valid rejects, at the byte the reference names, and
// passes everything else to the end of the stream.
func TestCheckerUTF8Property(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 20000 {
		msg := randomText(r, r.IntN(300), r.IntN(2) == 0)
		var stream []byte
		var at []int // stream offset of each message byte
		rest := msg
		for first := true; first || len(rest) > 0; first = false {
			n := min(len(rest), r.IntN(len(msg)+1))
			if r.IntN(4) == 0 {
				n = min(len(rest), r.IntN(4)) // tiny fragments, even empty ones
			}
			b0 := byte(opContinuation)
			if first {
				b0 = opText
			}
			if n == len(rest) {
				b0 |= 0x80
			}
			frame := encodeFrame(b0, rest[:n], r.Uint32())
			head := len(frame) - n
			for i := range n {
				at = append(at, len(stream)+head+i)
			}
			stream = append(stream, frame...)
			rest = rest[n:]
			if len(rest) > 0 && r.IntN(3) == 0 {
				stream = append(stream, encodeFrame(0x80|opPing, []byte{0xff, 0xfe}, r.Uint32())...)
			}
		}
		stream = append(stream, encodeFrame(0x80|opBinary, []byte{0xff}, r.Uint32())...)
		var chunks []int
		for range r.IntN(8) {
			chunks = append(chunks, r.IntN(20)+1)
		}

		got, e := runChecker(stream, false, chunks...)
		switch want := firstBad(msg); {
		case want < 0 && e != nil:
			t.Fatalf("iteration %d: valid message % x rejected at %d: %v", iter, msg, got, e.detail)
		case want >= 0 && e == nil:
			t.Fatalf("iteration %d: invalid message % x accepted", iter, msg)
		case want >= 0 && got != at[want]:
			t.Fatalf("iteration %d: message % x: violation at stream byte %d, want %d (message byte %d)",
				iter, msg, got, at[want], want)
		case e != nil && (e.code != StatusInvalidFramePayloadData || e.reason != ReasonInvalidUTF8):
			t.Fatalf("iteration %d: got %d %q", iter, e.code, e.reason)
		}
	}
}

// TestCheckerRunesSplitEverywhere: a message of multi-byte runes split into
// two fragments at every position, and the stream cut into two reads at
// every position, is accepted.
func TestCheckerRunesSplitEverywhere(t *testing.T) {
	msg := []byte("aé€😀\U0010FFFFz\u0800\uFFFD")
	for split := 0; split <= len(msg); split++ {
		stream := encodeFrame(opText, msg[:split], 0x12345678)
		stream = append(stream, encodeFrame(0x80|opContinuation, msg[split:], 0x9abcdef0)...)
		for cut := 0; cut <= len(stream); cut++ {
			if at, e := runChecker(stream, false, cut); e != nil {
				t.Fatalf("split %d, cut %d: rejected at %d: %s", split, cut, at, e.detail)
			}
		}
	}
}

// TestCheckerViolations: each violation is found at its offending byte.
func TestCheckerViolations(t *testing.T) {
	const key = 0xa1b2c3d4
	fine := encodeFrame(0x80|opText, []byte("fine"), key)
	cat := func(frames ...[]byte) []byte {
		var out []byte
		for _, f := range frames {
			out = append(out, f...)
		}
		return out
	}
	closeWith := func(code uint16, reason string) []byte {
		return encodeFrame(0x80|opClose, append(binary.BigEndian.AppendUint16(nil, code), reason...), key)
	}
	cases := []struct {
		name    string
		deflate bool
		stream  []byte
		at      int // offset of the offending byte, -1 for none
		want    *inboundError
	}{
		{"rsv2", false, cat(fine, []byte{0x80 | 0x20 | opText}), len(fine), errReservedBits},
		{"rsv3", false, cat(fine, []byte{0x80 | 0x10 | opBinary}), len(fine), errReservedBits},
		{"rsv1 without deflate", false, cat(fine, []byte{0x80 | 0x40 | opText}), len(fine), errReservedBits},
		{"rsv1 with deflate", true, cat(fine, encodeFrame(0x80|0x40|opText, []byte{0xff}, key)), -1, nil},
		{"rsv1 on a continuation", true, cat(encodeFrame(0x40|opText, []byte{1}, key), []byte{0x80 | 0x40}), 7, errReservedBits},
		{"rsv1 on a ping", true, []byte{0x80 | 0x40 | opPing}, 0, errReservedBits},
		{"opcode 3", false, cat(fine, []byte{0x83}), len(fine), errUnknownOpcode},
		{"opcode 11", false, []byte{0x8b}, 0, errUnknownOpcode},
		{"fragmented ping", false, []byte{opPing}, 0, errFragmentedCtl},
		{"fragmented close", false, []byte{opClose}, 0, errFragmentedCtl},
		{"ping of 126 bytes", false, []byte{0x80 | opPing, 0x80 | 126}, 1, errLongControl},
		{"stray continuation", false, cat(fine, []byte{0x80}), len(fine), errStrayCont},
		{"text inside a fragmented message", false, cat(encodeFrame(opText, []byte("a"), key), []byte{0x80 | opText}), 7, errNewInFragmented},
		{"unmasked", false, cat(fine, []byte{0x81, 0x01}), len(fine) + 1, errUnmasked},
		{"64-bit length with the top bit", false, []byte{0x82, 0x80 | 127, 0x80}, 2, errHugeLength},
		{"close of one byte", false, []byte{0x80 | opClose, 0x80 | 1}, 1, errOneByteClose},
		{"close code 1005", false, closeWith(1005, ""), 7, errInvalidCloseCode},
		{"close code 999", false, closeWith(999, "x"), 7, errInvalidCloseCode},
		{"close code 5000", false, closeWith(5000, ""), 7, errInvalidCloseCode},
		{"close code 1000, fine reason", false, closeWith(1000, "bye é"), -1, nil},
		{"close code 4999", false, closeWith(4999, ""), -1, nil},
		{"empty close", false, encodeFrame(0x80|opClose, nil, key), -1, nil},
		{"close reason invalid", false, closeWith(1000, "ok\xffno"), 10, errReasonUTF8},
		{"close reason truncated", false, closeWith(1000, "ok\xe2\x82"), 11, errReasonUTF8},
		{"text ends inside a rune", false, encodeFrame(0x80|opText, []byte("a\xe2\x82"), key), 8, errTextUTF8},
		{"empty last fragment ends a truncated text", false,
			cat(encodeFrame(opText, []byte("\xe2"), key), encodeFrame(0x80, nil, key)), 12, errTextUTF8},
		{"invalid text in a binary-sized frame", false, encodeFrame(0x80|opText, append(make([]byte, 200), 0xc0), key), 8 + 200, errTextUTF8},
		{"invalid bytes in binary", false, encodeFrame(0x80|opBinary, []byte{0xff, 0xc0}, key), -1, nil},
		{"invalid bytes in a compressed text", true, encodeFrame(0x80|0x40|opText, []byte{0xff, 0xc0}, key), -1, nil},
		{"a ping inside a fragmented text", false,
			cat(encodeFrame(opText, []byte("\xe2\x82"), key), encodeFrame(0x80|opPing, []byte{0xff}, key), encodeFrame(0x80, []byte("\xac"), key)), -1, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for cut := 0; cut <= len(tc.stream); cut++ { // every split into two reads
				at, e := runChecker(tc.stream, tc.deflate, cut)
				if e != tc.want || at != tc.at {
					t.Fatalf("read cut at %d: violation %v at %d, want %v at %d", cut, e, at, tc.want, tc.at)
				}
			}
		})
	}
}

// BenchmarkCheckerText measures the check on a masked text stream (the
// costliest case: every byte unmasked and validated), ASCII and not.
func BenchmarkCheckerText(b *testing.B) {
	for _, bc := range []struct {
		name string
		msg  []byte
	}{
		{"ascii", []byte(`{"type":"chat.say","req":17,"text":"hello everyone, this is a message of ordinary length"}`)},
		{"mixed", []byte(`{"type":"chat.say","text":"Grüße aus Köln — ça va? 你好，世界 😀"}`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var stream []byte
			for len(stream) < 64<<10 {
				stream = append(stream, encodeFrame(0x80|opText, bc.msg, 0x01020304)...)
			}
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				var f frameChecker
				if _, e := f.check(stream); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

// BenchmarkCheckerBinary measures the check on binary frames of 256 bytes
// (the echo benchmark's messages): headers parsed, payload skipped.
func BenchmarkCheckerBinary(b *testing.B) {
	var stream []byte
	for len(stream) < 64<<10 {
		stream = append(stream, encodeFrame(0x80|opBinary, make([]byte, 256), 0x01020304)...)
	}
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		var f frameChecker
		if _, e := f.check(stream); e != nil {
			b.Fatal(e)
		}
	}
}
