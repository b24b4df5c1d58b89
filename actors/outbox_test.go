package actors

import (
	"bytes"
	"testing"
)

// TestPackedRoundTrip packs items of every shape and reads them back.
func TestPackedRoundTrip(t *testing.T) {
	items := []outItem{
		{name: "AAAAAAAAAAAAAAAAAAAAAA", typ: 2, data: []byte("payload")},
		{name: "x", reqID: 1<<32 - 1, typ: 1, data: nil},
		{name: "", reqID: 7, typ: -1, data: bytes.Repeat([]byte{0xff}, 300)},
		{name: string(bytes.Repeat([]byte("n"), 200)), typ: 1, data: bytes.Repeat([]byte{1}, 70000)},
	}
	var p []byte
	want := 0
	for i := range items {
		p = appendPacked(p, &items[i])
		want += packedSize(&items[i])
	}
	if len(p) != want {
		t.Fatalf("packed %d bytes, packedSize says %d", len(p), want)
	}
	for i, w := range items {
		it, rest, ok := nextPacked(p)
		if !ok {
			t.Fatalf("item %d: not read", i)
		}
		if string(it.name) != w.name || it.reqID != w.reqID || it.typ != w.typ || !bytes.Equal(it.data, w.data) {
			t.Fatalf("item %d: got %q/%d/%d/%d bytes, want %q/%d/%d/%d bytes", i, it.name, it.reqID, it.typ, len(it.data), w.name, w.reqID, w.typ, len(w.data))
		}
		p = rest
	}
	if len(p) != 0 {
		t.Fatalf("%d bytes left over", len(p))
	}
}

// TestPackedRejectsTruncation cuts a packed item at every length: no prefix
// of it reads as an item.
func TestPackedRejectsTruncation(t *testing.T) {
	p := appendPacked(nil, &outItem{name: "conn", reqID: 300, typ: 2, data: []byte("hello")})
	for n := range len(p) {
		if _, _, ok := nextPacked(p[:n]); ok {
			t.Fatalf("a %d-byte prefix of a %d-byte item was read as an item", n, len(p))
		}
	}
	// A request ID or type over 32 bits is refused, not truncated.
	bad := []byte{1, 'n', 0x80, 0x80, 0x80, 0x80, 0x10, 2, 0}
	if _, _, ok := nextPacked(bad); ok {
		t.Fatal("a 33-bit request ID was accepted")
	}
}

// FuzzNextPacked reads arbitrary bytes as packed items: it never panics,
// each item it reads is within the input, and what it reads packs back to
// the bytes it consumed.
func FuzzNextPacked(f *testing.F) {
	f.Add(appendPacked(nil, &outItem{name: "conn", reqID: 1, typ: 2, data: []byte("x")}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		for len(p) > 0 {
			it, rest, ok := nextPacked(p)
			if !ok {
				return
			}
			if len(rest) >= len(p) {
				t.Fatalf("no progress: %d bytes then %d", len(p), len(rest))
			}
			again := appendPacked(nil, &outItem{name: string(it.name), reqID: it.reqID, typ: it.typ, data: it.data})
			// Varints may be encoded longer than needed in the input; the
			// item must still read the same from its canonical form.
			back, left, ok := nextPacked(again)
			if !ok || len(left) != 0 || !bytes.Equal(back.name, it.name) || back.reqID != it.reqID || back.typ != it.typ || !bytes.Equal(back.data, it.data) {
				t.Fatalf("item %+v does not survive packing again", it)
			}
			p = rest
		}
	})
}
