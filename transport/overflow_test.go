package transport_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// The overflow tests use a client that does not read and sockets with small
// kernel buffers (about 128 KiB in flight at most), so the writer is stuck on
// the first 1 MiB message and the queue fills up deterministically.

const bigMsg = 1 << 20

// numbered is a bigMsg-byte message whose first 4 bytes are i.
func numbered(i int) []byte {
	b := make([]byte, bigMsg)
	binary.BigEndian.PutUint32(b, uint32(i))
	return b
}

func number(t *testing.T, b []byte) int {
	t.Helper()
	if len(b) != bigMsg {
		t.Fatalf("client got a %d-byte message, want %d", len(b), bigMsg)
	}
	return int(binary.BigEndian.Uint32(b))
}

func TestOverflowCloseDisconnectsSlowConsumer(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 4,
		SendQueueBytes:    64 << 20,
		WriteTimeout:      500 * time.Millisecond,
	}})
	_, sc := ts.dial(t, nil) // never reads
	counters := ts.opts.Counters

	var err error
	writes := 0
	for writes < 100 {
		if err = sc.c.Write(websocket.MessageBinary, numbered(writes)); err != nil {
			break
		}
		writes++
	}
	if !errors.Is(err, transport.ErrQueueFull) {
		t.Fatalf("after %d writes to a client that does not read, Write = %v, want ErrQueueFull", writes, err)
	}
	if writes > 1+4 {
		t.Errorf("%d writes accepted, want at most 1 in flight + SendQueueMessages (4)", writes)
	}
	if err := sc.c.Write(websocket.MessageBinary, []byte("after")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after the overflow = %v, want ErrClosed", err)
	}
	if got := counters.SlowConsumerCloses.Load(); got != 1 {
		t.Errorf("SlowConsumerCloses = %d, want 1", got)
	}
	if got := counters.Dropped.Load(); got != 0 {
		t.Errorf("Dropped = %d, want 0 under OverflowClose", got)
	}
	// The stuck write is abandoned after the grace period (or the write
	// timeout), so the socket closes although the client never reads.
	wantInfo(t, sc.fin(t), transport.StatusTryAgainLater, transport.ReasonSlowConsumer, true)
	// Once the abandoned write returns, nothing is accounted as queued.
	eventually(t, "Queued() is (0, 0)", func() bool { m, b := sc.c.Queued(); return m == 0 && b == 0 })
}

func TestOverflowDropNewest(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 4,
		SendQueueBytes:    64 << 20,
		Overflow:          transport.OverflowDropNewest,
	}})
	client, sc := ts.dial(t, nil)
	client.SetReadLimit(-1)
	counters := ts.opts.Counters

	const n = 20
	var accepted []int
	full := 0
	for i := range n {
		switch err := sc.c.Write(websocket.MessageBinary, numbered(i)); {
		case err == nil:
			accepted = append(accepted, i)
		case errors.Is(err, transport.ErrQueueFull):
			full++
		default:
			t.Fatalf("Write %d = %v, want nil or ErrQueueFull", i, err)
		}
	}
	if full == 0 {
		t.Fatal("no Write reported ErrQueueFull although the client does not read")
	}
	if len(accepted) > 1+4 {
		t.Errorf("%d writes accepted, want at most 1 in flight + SendQueueMessages (4)", len(accepted))
	}
	if got := counters.Dropped.Load(); got != int64(full) {
		t.Errorf("Dropped = %d, want %d (one per refused write)", got, full)
	}
	if got := counters.SlowConsumerCloses.Load(); got != 0 {
		t.Errorf("SlowConsumerCloses = %d, want 0 under OverflowDropNewest", got)
	}

	// The client finally reads: it gets exactly the accepted messages, in order.
	for _, want := range accepted {
		if got := number(t, mustRead(t, client)); got != want {
			t.Fatalf("client got message %d, want %d", got, want)
		}
	}
	// The connection is still open and usable.
	if err := sc.c.Write(websocket.MessageText, []byte("still open")); err != nil {
		t.Fatalf("Write after the overflow: %v", err)
	}
	if got := mustRead(t, client); string(got) != "still open" {
		t.Fatalf("client got %q, want \"still open\"", got)
	}
	if sc.isFinished() {
		t.Error("OverflowDropNewest ended the connection")
	}
}

func TestOverflowDropOldest(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 4,
		SendQueueBytes:    64 << 20,
		Overflow:          transport.OverflowDropOldest,
	}})
	client, sc := ts.dial(t, nil)
	client.SetReadLimit(-1)
	counters := ts.opts.Counters

	const n = 20
	for i := range n {
		if err := sc.c.Write(websocket.MessageBinary, numbered(i)); err != nil {
			t.Fatalf("Write %d = %v, want nil under OverflowDropOldest", i, err)
		}
	}
	dropped := counters.Dropped.Load()
	if dropped == 0 {
		t.Fatal("Dropped = 0 although the client does not read")
	}
	if m, _ := sc.c.Queued(); m != 4 {
		t.Errorf("Queued() messages = %d, want SendQueueMessages (4)", m)
	}

	// The client finally reads until the last message written.
	var got []int
	for len(got) == 0 || got[len(got)-1] != n-1 {
		got = append(got, number(t, mustRead(t, client)))
		if len(got) > n {
			t.Fatalf("client got more messages than were written: %v", got)
		}
	}
	if len(got) != n-int(dropped) {
		t.Errorf("client got %d messages %v, want %d written - %d dropped", len(got), got, n, dropped)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("messages out of order: %v", got)
		}
	}
	// The newest messages survive: the queue held the last 4 written.
	if len(got) < 4 || !equalInts(got[len(got)-4:], []int{n - 4, n - 3, n - 2, n - 1}) {
		t.Errorf("client got %v, want it to end with the 4 newest messages", got)
	}
	// Only the message the writer was already sending may precede them.
	if len(got) > 1+4 {
		t.Errorf("client got %v, want at most 1 in flight + the 4 newest", got)
	}
	if sc.isFinished() {
		t.Error("OverflowDropOldest ended the connection")
	}
	if got := counters.SlowConsumerCloses.Load(); got != 0 {
		t.Errorf("SlowConsumerCloses = %d, want 0 under OverflowDropOldest", got)
	}
}

func mustRead(t *testing.T, c *websocket.Conn) []byte {
	t.Helper()
	_, b := readMsg(t, c)
	return b
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// With a count bound set, bytes are bounded too, not only messages.
func TestOverflowOnBytes(t *testing.T) {
	const each = bigMsg + transport.QueueOverhead
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 1000,
		SendQueueBytes:    3*each + transport.QueueOverhead,
		Overflow:          transport.OverflowDropNewest,
	}})
	_, sc := ts.dial(t, nil) // never reads

	if err := sc.c.Write(websocket.MessageBinary, numbered(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer took the first message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
	// The in-flight message counts: two more fit, a third does not.
	for i := 1; i <= 2; i++ {
		if err := sc.c.Write(websocket.MessageBinary, numbered(i)); err != nil {
			t.Fatalf("Write %d = %v, want nil (within SendQueueBytes)", i, err)
		}
	}
	if err := sc.c.Write(websocket.MessageBinary, numbered(3)); !errors.Is(err, transport.ErrQueueFull) {
		t.Fatalf("Write beyond SendQueueBytes = %v, want ErrQueueFull", err)
	}
	// An empty message fits in the last QueueOverhead bytes; a second one does not.
	if err := sc.c.Write(websocket.MessageBinary, nil); err != nil {
		t.Errorf("an empty message still fits: Write = %v", err)
	}
	if err := sc.c.Write(websocket.MessageBinary, nil); !errors.Is(err, transport.ErrQueueFull) {
		t.Errorf("a second empty message = %v, want ErrQueueFull: each message counts QueueOverhead", err)
	}
	if _, b := sc.c.Queued(); b != 3*each+transport.QueueOverhead {
		t.Errorf("Queued() bytes = %d, want exactly SendQueueBytes %d", b, 3*each+transport.QueueOverhead)
	}
}

// A single message larger than SendQueueBytes is accepted when the queue is empty.
func TestOversizedMessageAcceptedWhenQueueEmpty(t *testing.T) {
	ts := newServer(t, serverConfig{opts: transport.Options{SendQueueBytes: 1024}})
	client, sc := ts.dial(t, nil)
	client.SetReadLimit(-1)
	big := bytes.Repeat([]byte{'z'}, 10*1024)
	if err := sc.c.Write(websocket.MessageBinary, big); err != nil {
		t.Fatalf("Write of one oversized message to an empty queue = %v, want nil", err)
	}
	if got := mustRead(t, client); !bytes.Equal(got, big) {
		t.Errorf("client got %d bytes, want %d", len(got), len(big))
	}
}

// CloseSoon does not wait for a write stuck on a client that does not read:
// with a one-minute WriteTimeout, only the grace period can end it in time.
func TestCloseSoonAbandonsStuckWrite(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		WriteTimeout:   time.Minute,
		SendQueueBytes: 64 << 20,
	}})
	_, sc := ts.dial(t, nil) // never reads
	if err := sc.c.Write(websocket.MessageBinary, numbered(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer took the message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
	if err := sc.c.Write(websocket.MessageBinary, numbered(1)); err != nil {
		t.Fatal(err)
	}
	sc.c.CloseSoon(transport.StatusPolicyViolation, "enough")
	wantInfo(t, sc.fin(t), transport.StatusPolicyViolation, "enough", true)
}

// A client that stops reading is closed by WriteTimeout whatever the
// overflow policy, even one that never closes for a full queue: it is a
// stalled reader (1013), not a failed write.
func TestWriteTimeoutEndsStuckConnection(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 1000,
		SendQueueBytes:    1 << 30,
		Overflow:          transport.OverflowDropNewest,
		WriteTimeout:      300 * time.Millisecond,
	}})
	_, sc := ts.dial(t, nil) // never reads
	for i := range 20 {
		if err := sc.c.Write(websocket.MessageBinary, numbered(i)); err != nil {
			break // the timeout may already have closed it
		}
	}
	wantInfo(t, sc.fin(t), transport.StatusTryAgainLater, transport.ReasonStalled, true)
	if err := sc.c.Write(websocket.MessageBinary, []byte("after")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after the timeout = %v, want ErrClosed", err)
	}
	if got := ts.opts.Counters.SlowConsumerCloses.Load(); got != 1 {
		t.Errorf("SlowConsumerCloses = %d, want 1", got)
	}
	eventually(t, "Queued() is (0, 0)", func() bool { m, b := sc.c.Queued(); return m == 0 && b == 0 })
}
