package transport_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// The slow-consumer judgement is by lag, not by count: a burst queued at
// once is absorbed as long as its bytes fit, and only a reader that has
// stopped taking bytes for WriteTimeout is closed.

// small is a message of about the size of a chat line, numbered i.
func small(i int) []byte {
	b := make([]byte, 100)
	binary.BigEndian.PutUint32(b, uint32(i))
	return b
}

// A client that reads promptly gets a burst of 3,000 small messages queued at
// once (more than ten times the old count bound of 256) in full and in
// order, and stays open.
func TestPromptReaderAbsorbsBurst(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)
	const n = 3000

	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		for i := range n {
			_, b, err := client.Read(ctx)
			if err != nil {
				got <- err
				return
			}
			if len(b) != 100 || int(binary.BigEndian.Uint32(b)) != i {
				got <- errors.New("a message was lost, reordered or corrupted")
				return
			}
		}
		got <- nil
	}()
	for i := range n {
		if err := sc.c.Write(websocket.MessageBinary, small(i)); err != nil {
			t.Fatalf("Write %d of a burst of %d to a prompt reader = %v, want nil", i, n, err)
		}
	}
	if err := recv(t, got, "the client's reads"); err != nil {
		t.Fatalf("client: %v", err)
	}
	if sc.isFinished() {
		t.Errorf("the prompt reader's connection ended")
	}
	c := ts.opts.Counters
	if c.SlowConsumerCloses.Load() != 0 || c.Dropped.Load() != 0 {
		t.Errorf("SlowConsumerCloses = %d, Dropped = %d, want 0 and 0", c.SlowConsumerCloses.Load(), c.Dropped.Load())
	}
	// A message is counted once its write has returned, which may be after
	// the client has read it.
	eventually(t, fmt.Sprintf("MessagesOut to reach %d", n), func() bool { return c.MessagesOut.Load() == n })
}

// A client that never reads stalls the writer once its kernel buffers are
// full; after WriteTimeout without progress it is closed with 1013 and
// ReasonStalled, counted as a slow consumer, and its socket is released.
func TestStalledReaderIsClosed1013(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		WriteTimeout: writeTimeout,
		PingInterval: -1, // only the write side judges this client
	}})
	client, sc := ts.dial(t, nil) // never reads until the end
	client.SetReadLimit(-1)

	// One message much larger than the two sockets' buffers (~128 KiB): the
	// writer takes it and blocks once they are full.
	if err := sc.c.Write(websocket.MessageBinary, numbered(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer took the message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
	start := time.Now()
	bound := writeTimeout + 5*time.Second // the timeout plus generous scheduling slack
	if !waitForWithin(bound, sc.isFinished) {
		t.Fatalf("a reader that never reads was not closed within %v of its buffers filling", bound)
	}
	t.Logf("closed %v after the writer took the message (WriteTimeout %v)", time.Since(start).Round(time.Millisecond), writeTimeout)
	wantInfo(t, sc.fin(t), transport.StatusTryAgainLater, transport.ReasonStalled, true)
	if got := ts.opts.Counters.SlowConsumerCloses.Load(); got != 1 {
		t.Errorf("SlowConsumerCloses = %d, want 1", got)
	}
	if err := sc.c.Write(websocket.MessageBinary, []byte("after")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after the close = %v, want ErrClosed", err)
	}
	eventually(t, "Queued() is (0, 0)", func() bool { m, b := sc.c.Queued(); return m == 0 && b == 0 })
	// The socket is gone: the client, reading at last, finds its end.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, r, err := client.Reader(ctx)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
		if err == nil {
			_, _, err = client.Read(ctx)
		}
	}
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("client read after the stall = %v, want the connection's end", err)
	}
}

// A client that reads slowly but steadily is not a stalled one, even when a
// single message takes several WriteTimeouts to reach it: the judgement is
// on progress, not on the duration of a write.
func TestSteadyReaderOfLargeMessageIsNotClosed(t *testing.T) {
	const writeTimeout = time.Second // a gap of a second between reads would be a stall
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		WriteTimeout:   writeTimeout,
		PingInterval:   -1,
		SendQueueBytes: 8 << 20, // room for the large message and the next
	}})
	client, sc := ts.dial(t, nil)
	client.SetReadLimit(-1)
	big := make([]byte, 4<<20)
	big[len(big)-1] = 7
	if err := sc.c.Write(websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	if err := sc.c.Write(websocket.MessageText, []byte("next")); err != nil {
		t.Fatal(err)
	}

	// 4 KiB every 2 ms is about 2 MB/s: the 4 MiB message takes 2 s or more,
	// twice WriteTimeout or more, while each 4 KiB takes a few milliseconds.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, r, err := client.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	buf := make([]byte, 4<<10)
	total, last := 0, byte(0)
	for {
		n, err := r.Read(buf)
		total += n
		if n > 0 {
			last = buf[n-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("client read after %d bytes: %v", total, err)
		}
		time.Sleep(2 * time.Millisecond) // pacing: a slow reader, not a wait for a condition
	}
	if total != len(big) || last != 7 {
		t.Fatalf("client got %d bytes ending in %d, want %d ending in 7", total, last, len(big))
	}
	if took := time.Since(start); took < writeTimeout {
		t.Logf("the message took only %v (< WriteTimeout %v): the test did not exercise a long write", took, writeTimeout)
	}
	if got := mustRead(t, client); string(got) != "next" {
		t.Fatalf("client got %q, want \"next\"", got)
	}
	if sc.isFinished() || ts.opts.Counters.SlowConsumerCloses.Load() != 0 {
		t.Errorf("a steady reader was closed: finished %v, SlowConsumerCloses %d", sc.isFinished(), ts.opts.Counters.SlowConsumerCloses.Load())
	}
}

// Every queued message counts a fixed overhead besides its bytes, so that a
// flood of tiny (here empty) messages cannot hide in the byte bound.
func TestTinyMessagesCountAgainstQueueBytes(t *testing.T) {
	const room = 64 << 10
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{
		SendQueueMessages: 1 << 20, // no count bound to speak of: the bytes must bind
		// The in-flight message, then room for room/QueueOverhead empty ones.
		SendQueueBytes: bigMsg + transport.QueueOverhead + room,
	}})
	_, sc := ts.dial(t, nil) // never reads
	if err := sc.c.Write(websocket.MessageBinary, numbered(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer took the first message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
	var err error
	writes := 0
	for writes < 100_000 {
		if err = sc.c.Write(websocket.MessageBinary, nil); err != nil {
			break
		}
		writes++
	}
	if !errors.Is(err, transport.ErrQueueFull) {
		t.Fatalf("after %d empty messages, Write = %v, want ErrQueueFull", writes, err)
	}
	if want := room / transport.QueueOverhead; writes != want {
		t.Errorf("%d empty messages accepted, want %d (room / QueueOverhead)", writes, want)
	}
	wantInfo(t, sc.fin(t), transport.StatusTryAgainLater, transport.ReasonSlowConsumer, true)
	if got := ts.opts.Counters.SlowConsumerCloses.Load(); got != 1 {
		t.Errorf("SlowConsumerCloses = %d, want 1", got)
	}
}

// The default queue has no count bound: only bytes.
func TestDefaultQueueHasNoCountBound(t *testing.T) {
	o := transport.Options{}.WithDefaults()
	if o.SendQueueMessages != 0 {
		t.Errorf("default SendQueueMessages = %d, want 0 (no count bound)", o.SendQueueMessages)
	}
	if o.SendQueueBytes != transport.DefaultSendQueueBytes || o.WriteTimeout != transport.DefaultWriteTimeout {
		t.Errorf("defaults: SendQueueBytes %d, WriteTimeout %v", o.SendQueueBytes, o.WriteTimeout)
	}
}
