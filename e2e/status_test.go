package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/examples/chat/chatserver"
)

// TestStatusPageInBrowser opens the chat example's /status in headless
// Chromium while Go clients chat: the page loads, shows the server ready,
// counts the connections, shows messages per second in and out moving, and
// lists a client's close by code; the screenshot is kept.
func TestStatusPageInBrowser(t *testing.T) {
	browser := newBrowser(t)
	mux, s := chatserver.New(chatserver.Config{Logger: slog.New(slog.DiscardHandler)})
	l := listen(t, "127.0.0.1:0")
	base := "http://" + l.Addr().String()
	serve(t, s, mux, l)

	p := newPage(t, browser, "status")
	p.do(chromedp.Navigate(base + "/status"))
	p.waitFor("the page shows the server ready with no connection",
		`document.getElementById("state").textContent === "ready" && document.getElementById("open").textContent === "0"`)

	alice := joinBot(t, base, "ops", "alice")
	joinBot(t, base, "ops", "bob")
	p.waitFor("two connections open", `document.getElementById("open").textContent === "2"`)

	// Alice chats, five messages a second, until the page has seen it (or
	// 600 messages: a bound, not a timing).
	ctx, cancel := context.WithCancel(context.Background())
	chatted := make(chan error, 1)
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := range 600 {
			select {
			case <-ctx.Done():
				chatted <- nil
				return
			case <-tick.C:
			}
			if err := alice.c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"say","text":"status %d"}`, i)); err != nil {
				chatted <- err
				return
			}
		}
		chatted <- nil
	}()
	before := eval[string](p, `document.getElementById("msgs-in").textContent`)
	p.waitFor("messages in and out per second above zero, and the total moving", fmt.Sprintf(
		`Number(document.getElementById("in-rate").textContent) > 0 &&
		 Number(document.getElementById("out-rate").textContent) > 0 &&
		 document.getElementById("msgs-in").textContent !== %s`, jsString(before)))
	dir := t.TempDir()
	t.Logf("screenshot while chatting: %s", p.screenshot(dir, "status-chatting.png"))
	cancel()
	if err := <-chatted; err != nil {
		t.Fatalf("alice chatting: %v", err)
	}

	if err := alice.c.Close(websocket.StatusNormalClosure, "bye"); err != nil && !strings.Contains(err.Error(), "closed") {
		t.Fatalf("alice closing: %v", err)
	}
	p.waitFor("one connection open, and alice's close listed as 1000 by the client",
		`document.getElementById("open").textContent === "1" &&
		 [...document.querySelectorAll("#closes tr")].some((tr) => tr.cells[0].textContent === "1000" && tr.cells[2].textContent === "client")`)
	t.Logf("screenshot after a close: %s", p.screenshot(dir, "status-closed.png"))
}
