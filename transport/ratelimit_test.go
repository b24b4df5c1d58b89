package transport_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// fakeClock is a rate-limit clock that moves only when the test says so.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// limitedServer starts a test server whose connections have rate limit rl
// and the clock.
func limitedServer(t *testing.T, rl transport.RateLimit, clock *fakeClock, opts transport.Options) *testServer {
	t.Helper()
	opts.RateLimit = rl
	transport.SetRateClock(&opts, clock.now)
	return newServer(t, serverConfig{opts: opts})
}

// sendAndCollect writes n text messages "<prefix> i" and returns, for each
// delivered frame, whether it was limited.
func sendAndCollect(t *testing.T, client *websocket.Conn, sc *serverConn, prefix string, n int, size int) []bool {
	t.Helper()
	for i := range n {
		msg := fmt.Sprintf("%s %d ", prefix, i)
		msg += strings.Repeat("x", max(0, size-len(msg)))
		writeMsg(t, client, websocket.MessageText, []byte(msg))
	}
	limited := make([]bool, n)
	for i := range n {
		f := sc.frame(t)
		if want := fmt.Sprintf("%s %d ", prefix, i); !strings.HasPrefix(string(f.Data), want) {
			t.Fatalf("frame %d is %.20q, want it to start %q", i, f.Data, want)
		}
		limited[i] = f.Limited
	}
	return limited
}

func countTrue(b []bool) (n int) {
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// TestRateLimitMessages: a burst beyond MessageBurst has exactly the excess
// marked Limited (and counted); the connection stays open, and once the
// bucket refills (the clock moves) messages pass again, up to the burst.
func TestRateLimitMessages(t *testing.T) {
	clock := newFakeClock()
	ts := limitedServer(t, transport.RateLimit{MessagesPerSecond: 10, MessageBurst: 5, BytesPerSecond: -1}, clock, transport.Options{})
	client, sc := ts.dial(t, nil)

	got := sendAndCollect(t, client, sc, "burst", 8, 0)
	if want := []bool{false, false, false, false, false, true, true, true}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("limited = %v, want %v", got, want)
	}
	if n := ts.opts.Counters.RateLimited.Load(); n != 3 {
		t.Errorf("Counters.RateLimited = %d, want 3", n)
	}

	clock.advance(200 * time.Millisecond) // two tokens
	if got := sendAndCollect(t, client, sc, "later", 3, 0); fmt.Sprint(got) != fmt.Sprint([]bool{false, false, true}) {
		t.Fatalf("after 200 ms: limited = %v, want two to pass", got)
	}
	clock.advance(time.Hour) // full again, but no more than the burst
	if got := countTrue(sendAndCollect(t, client, sc, "refilled", 7, 0)); got != 2 {
		t.Fatalf("after an hour: %d of 7 limited, want 2", got)
	}
	if n := ts.opts.Counters.MessagesIn.Load(); n != 18 {
		t.Errorf("Counters.MessagesIn = %d, want all 18 read", n)
	}
	writeMsg(t, client, websocket.MessageText, []byte("still open")) // limited, but the connection is fine
	if f := sc.frame(t); !f.Limited {
		t.Error("a message beyond the burst passed")
	}
	if sc.isFinished() {
		t.Fatal("the connection ended")
	}
}

// TestRateLimitBytes: the byte bucket limits by payload size; a message must
// fit both buckets.
func TestRateLimitBytes(t *testing.T) {
	clock := newFakeClock()
	ts := limitedServer(t, transport.RateLimit{MessagesPerSecond: -1, BytesPerSecond: 1000, ByteBurst: 3000}, clock,
		transport.Options{MaxMessageSize: 1000})
	client, sc := ts.dial(t, nil)

	if got := sendAndCollect(t, client, sc, "big", 4, 1000); fmt.Sprint(got) != fmt.Sprint([]bool{false, false, false, true}) {
		t.Fatalf("four 1000-byte messages, burst 3000: limited = %v", got)
	}
	writeMsg(t, client, websocket.MessageText, nil) // an empty message costs nothing
	if f := sc.frame(t); f.Limited {
		t.Error("an empty message was limited with an empty byte bucket")
	}
	clock.advance(time.Second)
	if got := sendAndCollect(t, client, sc, "after", 2, 600); fmt.Sprint(got) != fmt.Sprint([]bool{false, true}) {
		t.Fatalf("1000 bytes refilled, two 600-byte messages: limited = %v", got)
	}
}

// TestRateLimitBurstHoldsAMaximalMessage: a byte burst below MaxMessageSize
// is raised to it, or a legal message could never pass.
func TestRateLimitBurstHoldsAMaximalMessage(t *testing.T) {
	clock := newFakeClock()
	ts := limitedServer(t, transport.RateLimit{MessagesPerSecond: -1, BytesPerSecond: 10, ByteBurst: 100}, clock,
		transport.Options{MaxMessageSize: 4000})
	if b := ts.opts.RateLimit.ByteBurst; b != 4000 {
		t.Fatalf("ByteBurst = %d, want MaxMessageSize (4000)", b)
	}
	client, sc := ts.dial(t, nil)
	if got := sendAndCollect(t, client, sc, "max", 1, 4000); got[0] {
		t.Fatal("a message of MaxMessageSize was limited on a full bucket")
	}
}

// TestRateLimitClosePolicy: under RateLimitClose the first message beyond
// the limit closes the connection with 1008 "rate limit exceeded".
func TestRateLimitClosePolicy(t *testing.T) {
	clock := newFakeClock()
	ts := limitedServer(t, transport.RateLimit{MessagesPerSecond: 1, MessageBurst: 2, Policy: transport.RateLimitClose}, clock, transport.Options{})
	client, sc := ts.dial(t, nil)
	for i := range 5 {
		writeMsg(t, client, websocket.MessageText, fmt.Appendf(nil, "m%d", i))
	}
	_, err := readClose(t, client)
	if ce := closeErr(t, err); ce.Code != transport.StatusPolicyViolation || ce.Reason != transport.ReasonRateLimited {
		t.Errorf("client got close %d %q, want 1008 %q", ce.Code, ce.Reason, transport.ReasonRateLimited)
	}
	wantInfo(t, sc.fin(t), transport.StatusPolicyViolation, transport.ReasonRateLimited, true)
	for i := range 2 {
		if f := sc.frame(t); string(f.Data) != fmt.Sprintf("m%d", i) || f.Limited {
			t.Errorf("frame %d: %q limited=%v", i, f.Data, f.Limited)
		}
	}
	if n := len(sc.frames); n != 0 {
		t.Errorf("%d frames delivered beyond the limit", n)
	}
	if n := ts.opts.Counters.RateLimited.Load(); n < 1 {
		t.Errorf("Counters.RateLimited = %d", n)
	}
}

// TestRateLimitOff: negative rates turn the buckets off.
func TestRateLimitOff(t *testing.T) {
	ts := newServer(t, serverConfig{opts: transport.Options{RateLimit: transport.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}}})
	client, sc := ts.dial(t, nil)
	if n := countTrue(sendAndCollect(t, client, sc, "flood", 1000, 0)); n != 0 {
		t.Fatalf("%d of 1000 messages limited with the limits off", n)
	}
}

func TestRateLimitDefaults(t *testing.T) {
	got := transport.Options{}.WithDefaults().RateLimit
	want := transport.RateLimit{MessagesPerSecond: 200, MessageBurst: 400, BytesPerSecond: 1 << 20, ByteBurst: 2 << 20}
	if got != want {
		t.Errorf("default RateLimit = %+v, want %+v", got, want)
	}
	got = transport.Options{MaxMessageSize: 16 << 20, RateLimit: transport.RateLimit{MessagesPerSecond: 0.5}}.WithDefaults().RateLimit
	want = transport.RateLimit{MessagesPerSecond: 0.5, MessageBurst: 1, BytesPerSecond: 1 << 20, ByteBurst: 16 << 20}
	if got != want {
		t.Errorf("RateLimit with 0.5 msg/s and 16 MiB messages = %+v, want %+v", got, want)
	}
	off := transport.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}
	if got := (transport.Options{RateLimit: off}).WithDefaults().RateLimit; got != off {
		t.Errorf("disabled RateLimit became %+v", got)
	}
	for p, want := range map[transport.RateLimitPolicy]string{
		transport.RateLimitReject: "reject", transport.RateLimitClose: "close", transport.RateLimitPolicy(9): "unknown",
	} {
		if got := p.String(); got != want {
			t.Errorf("RateLimitPolicy(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}
