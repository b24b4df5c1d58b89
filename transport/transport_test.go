package transport_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

func TestFramesDeliveredInOrderTextAndBinary(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	const n = 200
	msg := func(i int) (websocket.MessageType, []byte) {
		if i%2 == 0 {
			return websocket.MessageText, fmt.Appendf(nil, "text %d é", i)
		}
		return websocket.MessageBinary, append([]byte{0xff, 0x00, byte(i)}, bytes.Repeat([]byte{byte(i)}, i)...)
	}
	for i := range n {
		typ, data := msg(i)
		writeMsg(t, client, typ, data)
	}
	for i := range n {
		f := sc.frame(t)
		typ, data := msg(i)
		if f.Type != typ || !bytes.Equal(f.Data, data) {
			t.Fatalf("frame %d = (%v, %q), want (%v, %q)", i, f.Type, f.Data, typ, data)
		}
	}

	// And the other way round: server writes arrive in order with their type.
	for i := range n {
		typ, data := msg(i)
		if err := sc.c.Write(typ, data); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
	for i := range n {
		gotTyp, got := readMsg(t, client)
		typ, data := msg(i)
		if gotTyp != typ || !bytes.Equal(got, data) {
			t.Fatalf("client message %d = (%v, %q), want (%v, %q)", i, gotTyp, got, typ, data)
		}
	}
}

func TestMaxInflightStopsReaderUntilRelease(t *testing.T) {
	ts := newServer(t, serverConfig{
		opts:          transport.Options{MaxInflight: 2},
		manualRelease: true,
	})
	client, sc := ts.dial(t, nil)
	counters := ts.opts.Counters

	// Releases with nothing delivered must not bank tokens.
	sc.c.Release()
	sc.c.Release()
	sc.c.Release()

	const n = 10
	for i := range n {
		writeMsg(t, client, websocket.MessageText, fmt.Appendf(nil, "m%d", i))
	}

	// The reader counts a message before it waits for a token, so MessagesIn
	// reaching 3 means the third message has been read and the reader is
	// parked on the full inflight window.
	eventually(t, "the reader has read 3 messages", func() bool { return counters.MessagesIn.Load() >= 3 })
	if got := counters.MessagesIn.Load(); got != 3 {
		t.Fatalf("reader read %d messages while 2 were unreleased, want 3 (2 delivered + 1 parked)", got)
	}
	if got := len(sc.frames); got != 2 {
		t.Fatalf("%d frames delivered while none was released, want exactly MaxInflight=2", got)
	}

	// Each Release lets exactly one more frame through, in order.
	for i := range n {
		f := sc.frame(t)
		if want := fmt.Sprintf("m%d", i); string(f.Data) != want {
			t.Fatalf("frame %d = %q, want %q", i, f.Data, want)
		}
		// i frames are released, so at most frames i and i+1 can have been
		// delivered: at most one more may be waiting in the channel.
		if extra := len(sc.frames); extra > 1 {
			t.Fatalf("after frame %d and %d releases, %d more frames were delivered", i, i, extra)
		}
		sc.c.Release()
	}
	if got := counters.MessagesIn.Load(); got != n {
		t.Errorf("MessagesIn = %d, want %d", got, n)
	}
}

func TestConcurrentWritesAndCounters(t *testing.T) {
	ts := newServer(t, serverConfig{opts: transport.Options{
		SendQueueMessages: 1 << 20,
		SendQueueBytes:    1 << 30,
	}})
	client, sc := ts.dial(t, nil)
	counters := ts.opts.Counters

	const writers, perWriter = 16, 200
	var bytesOut int64
	for g := range writers {
		for i := range perWriter {
			bytesOut += int64(len(outMsg(g, i)))
		}
	}

	// The client reads everything the server writes.
	type result struct {
		msgs [][]byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		for {
			_, b, err := client.Read(t.Context())
			if err != nil {
				r.err = err
				got <- r
				return
			}
			r.msgs = append(r.msgs, b)
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := sc.c.Write(websocket.MessageText, outMsg(g, i)); err != nil {
					errs <- fmt.Errorf("writer %d message %d: %w", g, i, err)
					return
				}
			}
		})
	}

	// Meanwhile the client sends to the server from several goroutines too.
	const clientWriters, perClient = 4, 50
	var bytesIn int64
	var cwg sync.WaitGroup
	for g := range clientWriters {
		for i := range perClient {
			bytesIn += int64(len(fmt.Sprintf("in %d %d", g, i)))
		}
		cwg.Go(func() {
			for i := range perClient {
				if err := client.Write(t.Context(), websocket.MessageBinary, fmt.Appendf(nil, "in %d %d", g, i)); err != nil {
					errs <- fmt.Errorf("client writer %d: %w", g, err)
					return
				}
			}
		})
	}
	wg.Wait()
	cwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for range clientWriters * perClient {
		sc.frame(t)
	}

	// Close flushes the queue; once finished has run every write is counted.
	sc.c.Close(transport.StatusNormalClosure, "done")
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "done", true)
	r := recv(t, got, "the client reader to end")
	if ce := closeErr(t, r.err); ce.Code != websocket.StatusNormalClosure || ce.Reason != "done" {
		t.Errorf("client saw close %v %q, want 1000 \"done\"", ce.Code, ce.Reason)
	}

	if len(r.msgs) != writers*perWriter {
		t.Fatalf("client received %d messages, want %d", len(r.msgs), writers*perWriter)
	}
	next := make([]int, writers) // each writer's messages arrive in its own order
	for _, m := range r.msgs {
		var g, i int
		if _, err := fmt.Sscanf(string(m), "w%d m%d", &g, &i); err != nil {
			t.Fatalf("unexpected message %q", m)
		}
		if !bytes.Equal(m, outMsg(g, i)) {
			t.Fatalf("message corrupted: %q", m)
		}
		if i != next[g] {
			t.Fatalf("writer %d: got message %d, want %d (per-writer order broken)", g, i, next[g])
		}
		next[g]++
	}

	if got := counters.MessagesOut.Load(); got != writers*perWriter {
		t.Errorf("MessagesOut = %d, want %d", got, writers*perWriter)
	}
	if got := counters.BytesOut.Load(); got != bytesOut {
		t.Errorf("BytesOut = %d, want %d", got, bytesOut)
	}
	if got := counters.MessagesIn.Load(); got != clientWriters*perClient {
		t.Errorf("MessagesIn = %d, want %d", got, clientWriters*perClient)
	}
	if got := counters.BytesIn.Load(); got != bytesIn {
		t.Errorf("BytesIn = %d, want %d", got, bytesIn)
	}
	if m, b := sc.c.Queued(); m != 0 || b != 0 {
		t.Errorf("Queued() = (%d, %d) after the flush, want (0, 0)", m, b)
	}
}

// outMsg is message i of writer g; lengths vary so that byte counts matter.
func outMsg(g, i int) []byte {
	return fmt.Appendf(nil, "w%d m%d %s", g, i, strings.Repeat("x", (g*7+i)%50))
}

func TestCloseFlushesQueueThenSendsCloseFrame(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	const n = 100
	for i := range n {
		if err := sc.c.Write(websocket.MessageText, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
	sc.c.Close(4000, "bye")
	sc.c.Close(4001, "second close is ignored")
	if err := sc.c.Write(websocket.MessageText, []byte("late")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}

	msgs, err := readClose(t, client)
	if len(msgs) != n {
		t.Fatalf("client received %d messages before the close frame, want all %d", len(msgs), n)
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("m%d", i); string(m) != want {
			t.Fatalf("message %d = %q, want %q", i, m, want)
		}
	}
	if ce := closeErr(t, err); ce.Code != 4000 || ce.Reason != "bye" {
		t.Errorf("client saw close %v %q, want 4000 \"bye\"", ce.Code, ce.Reason)
	}
	wantInfo(t, sc.fin(t), 4000, "bye", true)
	if err := sc.c.Write(websocket.MessageText, []byte("later")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after finished = %v, want ErrClosed", err)
	}
	// The cleanup checks that finished ran exactly once once every
	// goroutine of the connection has exited.
}

func TestClientInitiatedClose(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	writeMsg(t, client, websocket.MessageText, []byte("hello"))
	if f := sc.frame(t); string(f.Data) != "hello" {
		t.Fatalf("frame = %q", f.Data)
	}
	if err := client.Close(4002, "client bye"); err != nil {
		t.Errorf("client Close: %v (the server should have echoed the close frame)", err)
	}
	wantInfo(t, sc.fin(t), 4002, "client bye", false)
}

func TestClientVanishesWithoutCloseFrame(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	writeMsg(t, client, websocket.MessageBinary, []byte{1, 2, 3})
	sc.frame(t)
	_ = client.CloseNow()
	wantInfo(t, sc.fin(t), transport.StatusAbnormalClosure, transport.ReasonConnLost, false)
	if err := sc.c.Write(websocket.MessageText, []byte("x")); err != nil && !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write to a dead connection = %v, want nil or ErrClosed", err)
	}
}

func TestMaxMessageSize(t *testing.T) {
	const limit = 1024
	ts := newServer(t, serverConfig{opts: transport.Options{MaxMessageSize: limit}})
	client, sc := ts.dial(t, nil)

	atLimit := bytes.Repeat([]byte{'a'}, limit)
	writeMsg(t, client, websocket.MessageBinary, atLimit)
	if f := sc.frame(t); !bytes.Equal(f.Data, atLimit) {
		t.Fatalf("a message of exactly MaxMessageSize was not delivered intact (%d bytes)", len(f.Data))
	}

	writeMsg(t, client, websocket.MessageBinary, bytes.Repeat([]byte{'b'}, limit+1))
	_, err := readClose(t, client)
	if ce := closeErr(t, err); ce.Code != websocket.StatusMessageTooBig {
		t.Errorf("client saw close %v %q, want 1009", ce.Code, ce.Reason)
	}
	wantInfo(t, sc.fin(t), transport.StatusMessageTooBig, transport.ReasonTooBig, true)
	if got := len(sc.frames); got != 0 {
		t.Errorf("%d frames delivered after the one at the limit, want 0", got)
	}
}

func TestInvalidUTF8ClosesWith1007(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	writeMsg(t, client, websocket.MessageText, []byte("valid ✓"))
	writeMsg(t, client, websocket.MessageBinary, []byte{0xff, 0xfe}) // binary is not validated
	writeMsg(t, client, websocket.MessageText, []byte{'o', 'k', 0xff, 0xfe})
	writeMsg(t, client, websocket.MessageText, []byte("after the bad one"))

	_, err := readClose(t, client)
	if ce := closeErr(t, err); ce.Code != websocket.StatusInvalidFramePayloadData || ce.Reason != transport.ReasonInvalidUTF8 {
		t.Errorf("client saw close %v %q, want 1007 %q", ce.Code, ce.Reason, transport.ReasonInvalidUTF8)
	}
	wantInfo(t, sc.fin(t), transport.StatusInvalidFramePayloadData, transport.ReasonInvalidUTF8, true)

	// finished runs on the reader goroutine after every delivery, so the
	// frames channel is complete now. Whether the frame after the invalid
	// one is delivered is TestNoDeliveryAfterInvalidUTF8's business.
	if got := len(sc.frames); got < 2 {
		t.Fatalf("%d frames delivered, want the valid text and the binary", got)
	}
	if f := <-sc.frames; f.Type != websocket.MessageText || string(f.Data) != "valid ✓" {
		t.Errorf("first frame = %v %q", f.Type, f.Data)
	}
	if f := <-sc.frames; f.Type != websocket.MessageBinary || !bytes.Equal(f.Data, []byte{0xff, 0xfe}) {
		t.Errorf("second frame = %v %q", f.Type, f.Data)
	}
}

func TestCloseSoonDropsQueuedMessages(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20}})
	client, sc := ts.dial(t, nil)
	client.SetReadLimit(-1)

	// The first message cannot fit in the small socket buffers, so the
	// writer is stuck on it while the client does not read.
	big := bytes.Repeat([]byte{'B'}, bigMsg)
	if err := sc.c.Write(websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the writer took the first message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
	for i := range 5 {
		if err := sc.c.Write(websocket.MessageText, fmt.Appendf(nil, "queued %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	sc.c.CloseSoon(4003, "soon")
	if m, b := sc.c.Queued(); m != 0 || b > len(big)+transport.QueueOverhead {
		t.Errorf("Queued() = (%d, %d) after CloseSoon, want no message queued", m, b)
	}
	if err := sc.c.Write(websocket.MessageText, []byte("late")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after CloseSoon = %v, want ErrClosed", err)
	}

	// Now the client reads: it may get the message that was in flight, but
	// none of the queued ones.
	msgs, _ := readClose(t, client)
	for _, m := range msgs {
		if bytes.HasPrefix(m, []byte("queued")) {
			t.Errorf("client received %q, which CloseSoon should have dropped", m)
		}
	}
	wantInfo(t, sc.fin(t), 4003, "soon", true)
}

func TestCloseNow(t *testing.T) {
	ts := newServer(t, serverConfig{})
	client, sc := ts.dial(t, nil)

	sc.c.CloseNow(4004, "now")
	if err := sc.c.Write(websocket.MessageText, []byte("late")); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Write after CloseNow = %v, want ErrClosed", err)
	}
	_, err := readClose(t, client)
	if code := websocket.CloseStatus(err); code != -1 {
		t.Errorf("client saw close code %v, want none (CloseNow sends no close frame)", code)
	}
	wantInfo(t, sc.fin(t), 4004, "now", true)
}

// Writes racing with Close: every Write that returned nil must reach the
// client before the close frame; every other one must have failed with ErrClosed.
// TestWritesRacingClose: writers racing Close lose nothing that was
// accepted, whether they write on their goroutine, leave it to the
// flushers (Enqueue), or mix both.
func TestWritesRacingClose(t *testing.T) {
	for _, how := range []string{"Write", "Enqueue", "both"} {
		t.Run(how, func(t *testing.T) { testWritesRacingClose(t, how) })
	}
}

func testWritesRacingClose(t *testing.T, how string) {
	ts := newServer(t, serverConfig{opts: transport.Options{SendQueueMessages: 1 << 20, SendQueueBytes: 1 << 30}})
	client, sc := ts.dial(t, nil)

	type result struct {
		msgs [][]byte
		err  error
	}
	got := make(chan result, 1)
	go func() {
		msgs, err := readClose(t, client)
		got <- result{msgs, err}
	}()

	const writers, perWriter = 8, 300
	var mu sync.Mutex
	accepted := map[string]bool{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, writers)
	for g := range writers {
		wg.Go(func() {
			<-start
			for i := range perWriter {
				m := fmt.Sprintf("w%d m%d", g, i)
				write := sc.c.Write
				if how == "Enqueue" || (how == "both" && (g+i)%2 == 1) {
					write = sc.c.Enqueue
				}
				switch err := write(websocket.MessageText, []byte(m)); {
				case err == nil:
					mu.Lock()
					accepted[m] = true
					mu.Unlock()
				case errors.Is(err, transport.ErrClosed):
				default:
					errs <- err
					return
				}
			}
		})
	}
	close(start)
	sc.c.Close(transport.StatusNormalClosure, "race")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Write: %v, want nil or ErrClosed", err)
	}

	r := recv(t, got, "the client to see the close")
	if ce := closeErr(t, r.err); ce.Code != websocket.StatusNormalClosure || ce.Reason != "race" {
		t.Errorf("client saw close %v %q, want 1000 \"race\"", ce.Code, ce.Reason)
	}
	received := map[string]bool{}
	for _, m := range r.msgs {
		received[string(m)] = true
	}
	if len(received) != len(accepted) {
		t.Errorf("client received %d messages, %d writes were accepted", len(received), len(accepted))
	}
	for m := range accepted {
		if !received[m] {
			t.Errorf("accepted message %q never arrived", m)
			break
		}
	}
	wantInfo(t, sc.fin(t), transport.StatusNormalClosure, "race", true)
}

func TestAcceptOriginChecks(t *testing.T) {
	tests := []struct {
		name   string
		opts   transport.Options
		origin func(ts *testServer) string
		accept bool
	}{
		{"cross origin refused", transport.Options{}, func(*testServer) string { return "http://evil.example" }, false},
		{"cross origin allowed by pattern", transport.Options{OriginPatterns: []string{"evil.example"}},
			func(*testServer) string { return "http://evil.example" }, true},
		{"cross origin allowed by wildcard pattern", transport.Options{OriginPatterns: []string{"*.example"}},
			func(*testServer) string { return "https://evil.example" }, true},
		{"pattern does not match other hosts", transport.Options{OriginPatterns: []string{"good.example"}},
			func(*testServer) string { return "http://evil.example" }, false},
		{"insecure skip origin check", transport.Options{InsecureSkipOriginCheck: true},
			func(*testServer) string { return "http://evil.example" }, true},
		{"same origin", transport.Options{},
			func(ts *testServer) string { return ts.srv.URL }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newServer(t, serverConfig{opts: tt.opts})
			client, err := ts.dialErr(t, &websocket.DialOptions{
				HTTPHeader: http.Header{"Origin": {tt.origin(ts)}},
			})
			if !tt.accept {
				var de *dialError
				if !errors.As(err, &de) || de.status != http.StatusForbidden {
					t.Fatalf("dial = %v, want a 403 response", err)
				}
				if aerr := recv(t, ts.acceptErrs, "Accept's error"); aerr == nil {
					t.Error("Accept returned a nil error for a refused origin")
				}
				if len(ts.conns) != 0 {
					t.Error("a connection was started for a refused origin")
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			sc := recv(t, ts.conns, "the accepted connection")
			writeMsg(t, client, websocket.MessageText, []byte("hi"))
			if f := sc.frame(t); string(f.Data) != "hi" {
				t.Errorf("frame = %q", f.Data)
			}
		})
	}
}

func TestAcceptRejectsPlainHTTP(t *testing.T) {
	ts := newServer(t, serverConfig{})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Get(ts.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode > 499 {
		t.Errorf("plain GET got HTTP %d, want a 4xx", resp.StatusCode)
	}
	if aerr := recv(t, ts.acceptErrs, "Accept's error"); aerr == nil {
		t.Error("Accept returned a nil error for a request without an upgrade")
	}
}

func TestSubprotocolNegotiation(t *testing.T) {
	tests := []struct {
		offer []string
		want  string
	}{
		{[]string{"v1"}, "v1"},
		{[]string{"v2"}, "v2"},
		{[]string{"v1", "v2"}, "v2"}, // the server's preference order wins
		{[]string{"v3"}, ""},
		{nil, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.offer, ","), func(t *testing.T) {
			ts := newServer(t, serverConfig{opts: transport.Options{Subprotocols: []string{"v2", "v1"}}})
			client, sc := ts.dial(t, &websocket.DialOptions{Subprotocols: tt.offer})
			if got := sc.c.Subprotocol(); got != tt.want {
				t.Errorf("server Subprotocol() = %q, want %q", got, tt.want)
			}
			if got := client.Subprotocol(); got != tt.want {
				t.Errorf("client Subprotocol() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCompressionNoContextTakeover(t *testing.T) {
	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{CompressionNoContextTakeover: true}})
	client, _ := ts.dial(t, &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	msg := []byte(strings.Repeat("compressible ", 1000))
	writeMsg(t, client, websocket.MessageText, msg)
	if _, got := readMsg(t, client); !bytes.Equal(got, msg) {
		t.Errorf("echo over a compressed connection differs (%d bytes, want %d)", len(got), len(msg))
	}
}

func TestQueued(t *testing.T) {
	ts := newServer(t, serverConfig{smallBuffers: true, opts: transport.Options{SendQueueBytes: 64 << 20}})
	client, sc := ts.dial(t, nil)
	client.SetReadLimit(-1)

	if m, b := sc.c.Queued(); m != 0 || b != 0 {
		t.Fatalf("Queued() on a fresh connection = (%d, %d), want (0, 0)", m, b)
	}
	big := bytes.Repeat([]byte{'B'}, bigMsg)
	if err := sc.c.Write(websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	// The writer takes the message off the queue but cannot finish writing
	// it to a client that does not read: its bytes still count.
	eventually(t, "the writer took the first message", func() bool { m, _ := sc.c.Queued(); return m == 0 })
	if _, b := sc.c.Queued(); b != len(big)+transport.QueueOverhead {
		t.Fatalf("Queued() bytes = %d while a %d-byte write is in flight, want %d", b, len(big), len(big)+transport.QueueOverhead)
	}
	for _, size := range []int{100, 200, 300} {
		if err := sc.c.Write(websocket.MessageBinary, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	// Each message counts QueueOverhead besides its bytes.
	want := len(big) + 600 + 4*transport.QueueOverhead
	if m, b := sc.c.Queued(); m != 3 || b != want {
		t.Fatalf("Queued() = (%d, %d), want (3, %d)", m, b, want)
	}

	// Once the client reads, the queue drains completely.
	for _, size := range []int{len(big), 100, 200, 300} {
		if _, got := readMsg(t, client); len(got) != size {
			t.Fatalf("client got %d bytes, want %d", len(got), size)
		}
	}
	eventually(t, "the queue is empty", func() bool { m, b := sc.c.Queued(); return m == 0 && b == 0 })
}

func TestOptionsWithDefaults(t *testing.T) {
	o := transport.Options{}.WithDefaults()
	if o.MaxMessageSize != transport.DefaultMaxMessageSize || o.WriteTimeout != transport.DefaultWriteTimeout ||
		o.PingInterval != transport.DefaultPingInterval || o.PongTimeout != transport.DefaultPongTimeout ||
		o.SendQueueMessages != 0 || o.SendQueueBytes != transport.DefaultSendQueueBytes ||
		o.MaxInflight != transport.DefaultMaxInflight || o.Counters == nil || o.Overflow != transport.OverflowClose ||
		o.IdleTimeout != 0 {
		t.Errorf("Options{}.WithDefaults() = %+v", o)
	}
	set := transport.Options{
		MaxMessageSize: 7, WriteTimeout: time.Second, PingInterval: -1, PongTimeout: 2 * time.Second,
		IdleTimeout: 3 * time.Second, SendQueueMessages: 5, SendQueueBytes: 6, MaxInflight: 4,
		Overflow: transport.OverflowDropOldest,
		RateLimit: transport.RateLimit{MessagesPerSecond: 8, MessageBurst: 9, BytesPerSecond: 10, ByteBurst: 11,
			Policy: transport.RateLimitClose},
	}
	got := set.WithDefaults()
	if got.Counters == nil {
		t.Error("WithDefaults left Counters nil")
	}
	got.Counters = nil
	if fmt.Sprint(got) != fmt.Sprint(set) {
		t.Errorf("WithDefaults changed explicit fields: %+v, want %+v", got, set)
	}
	if got.PingInterval >= 0 {
		t.Errorf("a negative PingInterval (pings disabled) became %v", got.PingInterval)
	}
}

func TestOverflowPolicyString(t *testing.T) {
	for p, want := range map[transport.OverflowPolicy]string{
		transport.OverflowClose:      "close",
		transport.OverflowDropNewest: "drop-newest",
		transport.OverflowDropOldest: "drop-oldest",
		transport.OverflowPolicy(42): "unknown",
	} {
		if got := p.String(); got != want {
			t.Errorf("OverflowPolicy(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}

func TestCloseStatus(t *testing.T) {
	if got := transport.CloseStatus(websocket.CloseError{Code: 4005, Reason: "x"}); got != 4005 {
		t.Errorf("CloseStatus(CloseError 4005) = %v", got)
	}
	if got := transport.CloseStatus(fmt.Errorf("wrapped: %w", websocket.CloseError{Code: 1001})); got != 1001 {
		t.Errorf("CloseStatus(wrapped 1001) = %v", got)
	}
	if got := transport.CloseStatus(errors.New("other")); got != -1 {
		t.Errorf("CloseStatus(other) = %v, want -1", got)
	}
}

// After every connection has ended, however it ended, the process is back to
// the goroutines it had before: no reader, writer, heartbeat or ping is left.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()

	ts := newServer(t, serverConfig{echo: true, opts: transport.Options{
		MaxMessageSize: 1024,
		PingInterval:   50 * time.Millisecond,
		PongTimeout:    100 * time.Millisecond,
	}})
	type pair struct {
		client *websocket.Conn
		sc     *serverConn
	}
	open := func() pair {
		c, sc := ts.dial(t, nil)
		writeMsg(t, c, websocket.MessageText, []byte("hi"))
		if _, got := readMsg(t, c); string(got) != "hi" {
			t.Fatalf("echo = %q", got)
		}
		return pair{c, sc}
	}

	p := open() // the client closes
	if err := p.client.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Error(err)
	}
	p.sc.fin(t)

	p = open() // the server closes
	p.sc.c.Close(transport.StatusNormalClosure, "")
	readClose(t, p.client)
	p.sc.fin(t)

	p = open() // the client vanishes
	_ = p.client.CloseNow()
	p.sc.fin(t)

	p = open() // the server drops the socket
	p.sc.c.CloseNow(transport.StatusGoingAway, "")
	readClose(t, p.client)
	p.sc.fin(t)

	p = open() // the server closes without flushing
	_ = p.sc.c.Write(websocket.MessageText, []byte("maybe"))
	p.sc.c.CloseSoon(transport.StatusGoingAway, "")
	readClose(t, p.client)
	p.sc.fin(t)

	p = open() // invalid UTF-8
	writeMsg(t, p.client, websocket.MessageText, []byte{0xff})
	readClose(t, p.client)
	p.sc.fin(t)

	p = open() // too big
	writeMsg(t, p.client, websocket.MessageBinary, make([]byte, 2048))
	readClose(t, p.client)
	p.sc.fin(t)

	c, sc := ts.dial(t, nil) // never reads: ping timeout
	sc.fin(t)
	_ = c.CloseNow()

	ts.srv.Close()
	var n int
	if !waitFor(func() bool { n = runtime.NumGoroutine(); return n <= base }) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines after every connection ended, %d before:\n%s", n, base, buf)
	}
}

// unwrapWriter is middleware's ResponseWriter that hides Hijack but offers
// Unwrap, as http.ResponseController expects.
type unwrapWriter struct{ http.ResponseWriter }

func (w unwrapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestAcceptThroughResponseWriterWrappers(t *testing.T) {
	t.Run("unwrappable", func(t *testing.T) {
		ts := newServer(t, serverConfig{echo: true, wrap: func(w http.ResponseWriter) http.ResponseWriter {
			return unwrapWriter{w}
		}})
		client, sc := ts.dial(t, nil)
		writeMsg(t, client, websocket.MessageText, []byte("through middleware"))
		if _, got := readMsg(t, client); string(got) != "through middleware" {
			t.Errorf("echo = %q", got)
		}
		// CloseNow uses the hijacked socket found through Unwrap.
		sc.c.CloseNow(4006, "bye")
		readClose(t, client)
		wantInfo(t, sc.fin(t), 4006, "bye", true)
	})
}
