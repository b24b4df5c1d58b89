package transport_test

import (
	"bytes"
	"errors"
	"strconv"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// TestEnqueueHeldLeavesTheWriteToItsCaller checks EnqueueHeld's contract:
// the message that finds the queue idle makes its caller the writer, so
// nothing (no flusher, no later Write) writes until FlushHeld; what was
// queued meanwhile goes out with it, in order; and afterwards the right to
// write is free again.
func TestEnqueueHeldLeavesTheWriteToItsCaller(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	held, err := sc.c.EnqueueHeld(websocket.MessageText, []byte("a"))
	if err != nil || !held {
		t.Fatalf("EnqueueHeld on an idle queue = %v, %v; want held", held, err)
	}
	// The caller holds the right to write: everything else only queues.
	if held, err := sc.c.EnqueueHeld(websocket.MessageText, []byte("b")); err != nil || held {
		t.Fatalf("EnqueueHeld behind a held write = %v, %v; want queued, not held", held, err)
	}
	if err := sc.c.Enqueue(websocket.MessageText, []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := sc.c.Write(websocket.MessageText, []byte("d")); err != nil {
		t.Fatal(err)
	}
	if n, _ := sc.c.Queued(); n != 4 {
		t.Fatalf("before FlushHeld %d messages are queued; want all 4 (someone else wrote)", n)
	}
	sc.c.FlushHeld()
	for _, want := range []string{"a", "b", "c", "d"} {
		if _, got := readMsg(t, client); string(got) != want {
			t.Fatalf("read %q; want %q", got, want)
		}
	}
	// The flush handed the right on: the next message finds the queue idle.
	eventually(t, "the queue is empty", func() bool { n, _ := sc.c.Queued(); return n == 0 })
	if held, err := sc.c.EnqueueHeld(websocket.MessageText, []byte("e")); err != nil || !held {
		t.Fatalf("EnqueueHeld after FlushHeld = %v, %v; want held", held, err)
	}
	sc.c.FlushHeld()
	if _, got := readMsg(t, client); string(got) != "e" {
		t.Fatalf("read %q; want e", got)
	}
}

// TestEnqueueHeldAndClose checks that a Close asked for while a caller holds
// the write waits for its FlushHeld: the held message and then the close
// frame reach the client, and later messages are refused.
func TestEnqueueHeldAndClose(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	if held, err := sc.c.EnqueueHeld(websocket.MessageText, []byte("last")); err != nil || !held {
		t.Fatalf("EnqueueHeld = %v, %v; want held", held, err)
	}
	sc.c.Close(transport.StatusNormalClosure, "bye")
	if held, err := sc.c.EnqueueHeld(websocket.MessageText, []byte("late")); !errors.Is(err, transport.ErrClosed) || held {
		t.Fatalf("EnqueueHeld after Close = %v, %v; want ErrClosed", held, err)
	}
	sc.c.FlushHeld()
	data, err := readClose(t, client)
	if len(data) != 1 || string(data[0]) != "last" {
		t.Fatalf("the client read %q before the close; want [last]", data)
	}
	if ce := closeErr(t, err); ce.Code != websocket.StatusNormalClosure || ce.Reason != "bye" {
		t.Fatalf("close: %v", err)
	}
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "bye", true)
}

// TestEnqueueHeldLargeMessage checks that a message no pooled buffer holds
// is never held: it goes to the connection's writer goroutine at once, as
// Enqueue's would, and the caller has nothing to flush.
func TestEnqueueHeldLargeMessage(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	big := bytes.Repeat([]byte("x"), 20<<10)
	held, err := sc.c.EnqueueHeld(websocket.MessageBinary, big)
	if err != nil || held {
		t.Fatalf("EnqueueHeld of 20 KiB = %v, %v; want written by the writer goroutine, not held", held, err)
	}
	if _, got := readMsg(t, client); !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes; want the 20 KiB message", len(got))
	}
}

// TestEnqueueHeldHandsOverAtHalfTheQueue checks that a holder's batch that
// outgrows half the queue's bound does not wait for FlushHeld: a flusher
// takes the write over, so the client gets the messages before the holder
// flushes (a lane frame may carry more messages for one connection than its
// queue takes, and would otherwise overflow it). FlushHeld then does
// nothing, and the order holds.
func TestEnqueueHeldHandsOverAtHalfTheQueue(t *testing.T) {
	const bound = 8
	ts := newServer(t, serverConfig{opts: transport.Options{SendQueueMessages: bound}})
	client, sc := ts.dial(t, nil)

	if held, err := sc.c.EnqueueHeld(websocket.MessageText, []byte("0")); err != nil || !held {
		t.Fatalf("EnqueueHeld = %v, %v; want held", held, err)
	}
	for i := 1; i < bound/2; i++ {
		if err := sc.c.Enqueue(websocket.MessageText, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// Half the bound is queued: a flusher writes them, without FlushHeld.
	for i := range bound / 2 {
		if _, got := readMsg(t, client); string(got) != strconv.Itoa(i) {
			t.Fatalf("read %q; want %d", got, i)
		}
	}
	if err := sc.c.Enqueue(websocket.MessageText, []byte("after")); err != nil {
		t.Fatal(err)
	}
	sc.c.FlushHeld() // the right is no longer the caller's: nothing happens
	if _, got := readMsg(t, client); string(got) != "after" {
		t.Fatalf("read %q; want after", got)
	}
}
