package wsactor_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
)

// gated accepts at the handshake once its gate opens, and reports OnClose.
type gated struct {
	entered chan struct{}
	gate    chan struct{}
	closed  chan wsactor.StatusCode
}

func (g *gated) Connect(*wsactor.Handshake) wsactor.Decision {
	if g.gate != nil {
		g.entered <- struct{}{}
		<-g.gate
	}
	return wsactor.Accept()
}

func (g *gated) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

func (g *gated) OnClose(_ *wsactor.Conn, code wsactor.StatusCode, _ string) { g.closed <- code }

func TestSuspendAndResume(t *testing.T) {
	closed := make(chan wsactor.StatusCode, 4)
	gate, entered := make(chan struct{}), make(chan struct{}, 1)
	ids := make(chan wsactor.ID, 4)
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/open", func() wsactor.Handler { return &gated{closed: closed} })
		s.Handle("/slow", func() wsactor.Handler { return &gated{entered: entered, gate: gate, closed: closed} })
		s.HandleFunc("/id", func(c *wsactor.Conn, m wsactor.Message) error {
			ids <- c.ID()
			return nil
		})
	})
	if !ts.Ready() {
		t.Fatal("a new server is not ready")
	}
	open := dial(t, ts.url+"/open")
	who := dial(t, ts.url+"/id")
	write(t, who, websocket.MessageText, "?")
	id := recv(t, ids, "the connection's ID")

	// A handshake in progress when the server is suspended.
	opening := make(chan *websocket.Conn, 1)
	go func() {
		c, _, err := websocket.Dial(context.Background(), ts.url+"/slow", nil)
		if err != nil {
			t.Errorf("the handshake in progress was refused: %v", err)
			close(opening)
			return
		}
		opening <- c
	}()
	recv(t, entered, "the slow handshake to reach Connect")

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// Queued before the suspension: delivered before the close frame.
	if err := ts.Send(ctx, id, wsactor.Text("last words")); err != nil {
		t.Fatal(err)
	}
	ts.Suspend(wsactor.StatusServiceRestart, "service restart: node rejoining its cluster")
	if ts.Ready() {
		t.Fatal("Ready after Suspend")
	}
	if got := readText(t, who); got != "last words" {
		t.Fatalf("got %q before the close, want the message queued before Suspend", got)
	}
	wantClose(t, who, wsactor.StatusServiceRestart, "service restart: node rejoining its cluster")
	wantClose(t, open, wsactor.StatusServiceRestart, "*")
	if code := recv(t, closed, "OnClose of the open connection"); code != wsactor.StatusServiceRestart {
		t.Fatalf("OnClose got %d, want 1012", code)
	}

	_, err := dialErr(t, ts.url+"/open", nil)
	wantStatus(t, err, http.StatusServiceUnavailable)

	close(gate)
	c := recv(t, opening, "the handshake that was in progress")
	if c != nil {
		defer c.CloseNow()
		wantClose(t, c, wsactor.StatusServiceRestart, "*")
	}

	ts.Resume()
	if !ts.Ready() {
		t.Fatal("not Ready after Resume")
	}
	again := dial(t, ts.url+"/open")
	write(t, again, websocket.MessageText, "echo")
	if got := readText(t, again); got != "echo" {
		t.Fatalf("after Resume: got %q", got)
	}
}
