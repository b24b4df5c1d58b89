package wsactor_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// crashy panics on "panic", fails on "fail", closes with 4000 on "close",
// and otherwise answers with a per-handler-value counter, so a test can tell
// a restarted handler (counter back to 1) from a resumed one.
type crashy struct {
	opens *atomic.Int32
	seen  int
	rec   *recorder
}

func (h *crashy) OnOpen(c *wsactor.Conn) error {
	return c.SendText(fmt.Sprintf("open %d", h.opens.Add(1)))
}

func (h *crashy) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	h.seen++
	switch m.Text() {
	case "panic":
		panic("boom")
	case "fail":
		return errors.New("database unavailable")
	case "close":
		return wsactor.CloseWith(4000, "as requested")
	}
	return c.SendText(fmt.Sprintf("%s #%d", m.Text(), h.seen))
}

func (h *crashy) OnClose(c *wsactor.Conn, code wsactor.StatusCode, reason string) {
	if h.rec != nil {
		h.rec.closed <- closeEvent{c.ID(), code, reason}
	}
}

func crashyServer(t *testing.T, sup wsactor.Supervision, rec *recorder) *testServer {
	opens := new(atomic.Int32)
	return newTestServer(t, wsactor.Options{Supervision: sup}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return &crashy{opens: opens, rec: rec} })
	})
}

func TestPanicRestartsHandlerAndKeepsSocket(t *testing.T) {
	ts := crashyServer(t, wsactor.Supervision{}, nil)
	c := dial(t, ts.url+"/ws")
	if got := readText(t, c); got != "open 1" {
		t.Fatalf("got %q", got)
	}
	write(t, c, websocket.MessageText, "a")
	if got := readText(t, c); got != "a #1" {
		t.Fatalf("got %q", got)
	}
	write(t, c, websocket.MessageText, "panic")
	if got := readText(t, c); got != "open 2" {
		t.Fatalf("after a panic the handler should be restarted and opened again, got %q", got)
	}
	write(t, c, websocket.MessageText, "b")
	if got := readText(t, c); got != "b #1" {
		t.Fatalf("a restarted handler is a fresh value: got %q", got)
	}
	st := ts.Stats()
	if st.Panics != 1 || st.Restarts != 1 || st.ConnectionsOpen != 1 {
		t.Fatalf("stats: %+v", st)
	}
	logs := ts.logs.String()
	for _, want := range []string{"handler panicked", "boom", "conn=ws.", "goroutine ", "crashy"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("panic log lacks %q:\n%s", want, logs)
		}
	}
}

func TestRestartBudgetExhaustedCloses1011(t *testing.T) {
	rec := newRecorder()
	ts := crashyServer(t, wsactor.Supervision{MaxRestarts: 2}, rec)
	c := dial(t, ts.url+"/ws")
	readText(t, c)
	for i := 2; i <= 3; i++ {
		write(t, c, websocket.MessageText, "panic")
		if got := readText(t, c); got != fmt.Sprintf("open %d", i) {
			t.Fatalf("restart %d: got %q", i-1, got)
		}
	}
	write(t, c, websocket.MessageText, "panic")
	wantClose(t, c, websocket.StatusInternalError, "internal error")
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 1011 {
		t.Fatalf("OnClose: %+v", ev)
	}
	waitFor(t, "the connection to be gone", func() bool { return ts.Stats().ConnectionsOpen == 0 })
	if st := ts.Stats(); st.Panics != 3 || st.Restarts != 2 {
		t.Fatalf("stats: %+v", st)
	}
	// The process and other connections carry on.
	c2 := dial(t, ts.url+"/ws")
	if got := readText(t, c2); !strings.HasPrefix(got, "open ") {
		t.Fatalf("new connection after a crash: %q", got)
	}
}

func TestPanicPolicyCloseConnection(t *testing.T) {
	rec := newRecorder()
	ts := crashyServer(t, wsactor.Supervision{Policy: wsactor.CloseConnection}, rec)
	c := dial(t, ts.url+"/ws")
	readText(t, c)
	write(t, c, websocket.MessageText, "panic")
	wantClose(t, c, websocket.StatusInternalError, "internal error")
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 1011 {
		t.Fatalf("OnClose: %+v", ev)
	}
	if st := ts.Stats(); st.Restarts != 0 || st.Panics != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestPanicPolicyResumeKeepsHandlerState(t *testing.T) {
	ts := crashyServer(t, wsactor.Supervision{Policy: wsactor.ResumeHandler}, nil)
	c := dial(t, ts.url+"/ws")
	readText(t, c)
	write(t, c, websocket.MessageText, "a")
	readText(t, c)
	write(t, c, websocket.MessageText, "panic")
	write(t, c, websocket.MessageText, "b")
	if got := readText(t, c); got != "b #3" {
		t.Fatalf("resumed handler should keep its state and not reopen: got %q", got)
	}
	if st := ts.Stats(); st.Restarts != 0 || st.Panics != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestHandlerErrorsClose(t *testing.T) {
	rec := newRecorder()
	ts := crashyServer(t, wsactor.Supervision{}, rec)

	c := dial(t, ts.url+"/ws")
	readText(t, c)
	write(t, c, websocket.MessageText, "fail")
	wantClose(t, c, websocket.StatusInternalError, "internal error")
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 1011 {
		t.Fatalf("OnClose: %+v", ev)
	}
	if !strings.Contains(ts.logs.String(), "database unavailable") {
		t.Fatalf("the handler's error should be logged:\n%s", ts.logs.String())
	}

	c = dial(t, ts.url+"/ws")
	readText(t, c)
	write(t, c, websocket.MessageText, "close")
	wantClose(t, c, 4000, "as requested")
	if ev := recv(t, rec.closed, "OnClose"); ev.code != 4000 || ev.reason != "as requested" {
		t.Fatalf("OnClose: %+v", ev)
	}
}

type panicsInConnect struct{ echo }

func (panicsInConnect) Connect(*wsactor.Handshake) wsactor.Decision { panic("bad connect") }

func TestPanicInConnectIs500(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return panicsInConnect{} })
		s.Handle("/ok", func() wsactor.Handler { return echo{} })
	})
	_, err := dialErr(t, ts.url+"/ws", nil)
	wantStatus(t, err, http.StatusInternalServerError)
	c := dial(t, ts.url+"/ok")
	write(t, c, websocket.MessageText, "still here")
	if got := readText(t, c); got != "still here" {
		t.Fatalf("got %q", got)
	}
	waitFor(t, "admission slot to be released", func() bool { return ts.Stats().ConnectionsOpen == 1 })
}
