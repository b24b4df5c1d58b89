package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor/examples/chat/chatserver"
)

const adminToken = "e2e-admin-token"

// startChat serves the chat example on l.
func startChat(t *testing.T, addr string) (stop func()) {
	t.Helper()
	mux, s := chatserver.New(chatserver.Config{AdminToken: adminToken, Logger: slog.New(slog.DiscardHandler)})
	return serve(t, s, mux, listen(t, addr))
}

// joinChat opens the chat page and joins room as name with the form.
func joinChat(p *page, base, room, name string) {
	p.t.Helper()
	p.do(
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("join-btn")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SetValue(chromedp.ID("room"), room),
		chromedp.Click(chromedp.ID("join-btn")),
	)
}

// waitOpen waits until the page is connected with a connection ID other
// than old, and returns it.
func waitOpen(p *page, old string) string {
	p.t.Helper()
	p.waitFor("connected with a new ID", fmt.Sprintf(
		`document.getElementById("state").dataset.state === "open" &&
		 document.getElementById("state").textContent === "open" &&
		 !["—", %s].includes(document.getElementById("me").textContent)`, jsString(old)))
	return eval[string](p, `document.getElementById("me").textContent`)
}

// waitMember waits until the member list shows id with name.
func waitMember(p *page, id, name string) {
	p.t.Helper()
	p.waitFor("member "+name+" is listed", fmt.Sprintf(
		`(document.querySelector('#members li[data-id=%s]') || {}).textContent?.startsWith(%s)`,
		jsString(id), jsString(name)))
}

// say types a message and sends it with the form.
func say(p *page, text string) {
	p.t.Helper()
	p.do(
		chromedp.WaitEnabled(chromedp.ID("text")),
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send")),
	)
}

// waitMessage waits until a message of class cls (said, dm, notice…)
// containing text is shown.
func waitMessage(p *page, cls, text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("a %s message %q is shown", cls, text), fmt.Sprintf(
		`[...document.querySelectorAll("#messages li.%s")].some((li) => li.textContent.includes(%s))`,
		cls, jsString(text)))
}

// TestChatInBrowser runs the chat page in two browser contexts: they chat,
// DM, survive a server restart on their own, and chat again.
func TestChatInBrowser(t *testing.T) {
	browser := newBrowser(t)
	l := listen(t, "127.0.0.1:0")
	addr := l.Addr().String() // the restarted server comes back here
	mux, s := chatserver.New(chatserver.Config{AdminToken: adminToken, Logger: slog.New(slog.DiscardHandler)})
	stop := serve(t, s, mux, l)
	base := "http://" + addr

	alice := newPage(t, browser, "alice")
	bob := newPage(t, browser, "bob")
	joinChat(alice, base, "e2e", "Alice")
	aliceID := waitOpen(alice, "")
	joinChat(bob, base, "e2e", "Bob")
	bobID := waitOpen(bob, "")
	waitMember(alice, bobID, "Bob") // a presence event
	waitMember(bob, aliceID, "Alice")
	waitMember(bob, bobID, "Bob") // the "members" answer to who

	say(alice, "hello from Alice")
	waitMessage(bob, "said", "hello from Alice")
	waitMessage(alice, "said", "hello from Alice") // the sender gets it too

	// Click a member to DM them.
	bob.do(chromedp.Click(chromedp.CSS(`#members li[data-id="` + aliceID + `"]`)))
	bob.waitFor("the DM chip shows", `!document.getElementById("dm-to").hidden`)
	say(bob, "psst, Alice")
	waitMessage(alice, "dm", "psst, Alice")

	// The server goes away: both pages notice and keep trying on their own.
	stop()
	for _, p := range []*page{alice, bob} {
		p.waitFor("the page shows it is reconnecting", `(() => {
			const el = document.getElementById("state");
			return el.dataset.state === "reconnecting" && /^reconnecting in \d+s$/.test(el.textContent);
		})()`)
	}

	// A new server on the same address: the pages reconnect by themselves,
	// with new connection IDs, back in their room.
	startChat(t, addr)
	aliceID2 := waitOpen(alice, aliceID)
	bobID2 := waitOpen(bob, bobID)
	waitMember(alice, bobID2, "Bob")
	waitMember(bob, aliceID2, "Alice")
	waitMessage(alice, "system", "reconnected as Alice")
	bob.waitFor("the DM to the old Alice is dropped", `document.getElementById("dm-to").hidden`)

	say(bob, "back again, Bob here")
	waitMessage(alice, "said", "back again, Bob here")
	say(alice, "welcome back")
	waitMessage(bob, "said", "welcome back")

	// Reached from outside through the admin API.
	adminPost(t, base+"/api/rooms/e2e/broadcast", `{"text":"server notice"}`)
	waitMessage(alice, "notice", "server notice")
	waitMessage(bob, "notice", "server notice")

	dir := t.TempDir()
	shotA := alice.screenshot(dir, "chat-alice.png")
	shotB := bob.screenshot(dir, "chat-bob.png")
	t.Logf("screenshots: %s %s", shotA, shotB)

	// An application close code is final: kicked, the page stays closed.
	adminPost(t, base+"/api/close", fmt.Sprintf(`{"id":%q,"code":4000,"reason":"kicked"}`, bobID2))
	bob.waitFor("the page shows it was kicked", `document.getElementById("state").dataset.state === "closed" &&
		document.getElementById("state").textContent === "closed (4000 kicked)"`)
	waitMessage(bob, "system", "closed: 4000 kicked")
	bob.waitFor("the join form is back", `!document.getElementById("join").hidden`)
	if st := eval[string](bob, `document.getElementById("state").dataset.state`); st != "closed" {
		t.Errorf("after a kick the page is %q, want closed", st)
	}
	t.Logf("screenshot after the kick: %s", bob.screenshot(dir, "chat-bob-kicked.png"))
	alice.waitFor("Bob is gone from the list", fmt.Sprintf(`!document.querySelector('#members li[data-id=%s]')`, jsString(bobID2)))
}

func adminPost(t *testing.T, url, body string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
}

// TestChatJWTInBrowser joins a private room with a token from the page's
// address: the page offers it as the "bearer" subprotocol, the only header a
// browser's WebSocket can set.
func TestChatJWTInBrowser(t *testing.T) {
	browser := newBrowser(t)
	secret := []byte("e2e-jwt-secret-of-some-length")
	l := listen(t, "127.0.0.1:0")
	mux, s := chatserver.New(chatserver.Config{JWTSecret: secret, Logger: slog.New(slog.DiscardHandler)})
	serve(t, s, mux, l)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "u-ann", "name": "Ann", "rooms": []string{"private-dev"},
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}

	p := newPage(t, browser, "ann")
	p.do(chromedp.Navigate("http://" + l.Addr().String() + "/?room=private-dev&name=ignored&token=" + tok))
	id := waitOpen(p, "")
	waitMember(p, id, "Ann") // the token's name claim, not ?name=
	waitMessage(p, "system", "joined #private-dev as Ann")
	if u := eval[string](p, `location.search`); strings.Contains(u, "token") {
		t.Errorf("the token stayed in the address bar: %s", u)
	}
	say(p, "only for the dev room")
	waitMessage(p, "said", "only for the dev room")
}

// bot is a chat member driven from Go: it reads (and drops) what it gets.
type bot struct {
	c  *websocket.Conn
	id string
}

// joinBot connects to room as name and waits for its welcome.
func joinBot(t *testing.T, base, room, name string) *bot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws/chat/"+room+"?name="+name, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	_, data, err := c.Read(ctx)
	var w struct{ Type, ID string }
	if err != nil || json.Unmarshal(data, &w) != nil || w.Type != "welcome" {
		t.Fatalf("bot %s: %s, %v", name, data, err)
	}
	go func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return &bot{c: c, id: w.ID}
}

// waitMembers waits until the member list shows exactly these IDs.
func waitMembers(p *page, ids ...string) {
	p.t.Helper()
	want, _ := json.Marshal(slices.Sorted(slices.Values(ids)))
	p.waitFor(fmt.Sprintf("the list to show exactly %d members", len(ids)), fmt.Sprintf(
		`JSON.stringify([...document.querySelectorAll("#members li[data-id]")].map((li) => li.dataset.id).sort()) === %s &&
		 document.getElementById("count").textContent === %q`, jsString(string(want)), fmt.Sprint(len(ids))))
}

// TestChatPresenceInBrowser keeps the page's member list through batched
// presence events: members that come and go at once (within one batch) leave
// no trace, a room over the large-room limit shows its count only, and the
// list comes back when it shrinks.
func TestChatPresenceInBrowser(t *testing.T) {
	browser := newBrowser(t)
	l := listen(t, "127.0.0.1:0")
	mux, s := chatserver.New(chatserver.Config{LargeRoom: 3, Logger: slog.New(slog.DiscardHandler)})
	serve(t, s, mux, l)
	base := "http://" + l.Addr().String()

	p := newPage(t, browser, "alice")
	joinChat(p, base, "pres", "Alice")
	alice := waitOpen(p, "")
	one := joinBot(t, base, "pres", "Bot1")
	waitMember(p, one.id, "Bot1")
	waitMessage(p, "system", "Bot1 joined")

	// Five members come and go at once; the page's "who" races them.
	for i := range 5 {
		b := joinBot(t, base, "pres", fmt.Sprintf("Flash%d", i))
		b.c.CloseNow()
	}
	p.do(chromedp.Reload()) // asks who again while some may still be listed
	alice = waitOpen(p, alice)
	waitMembers(p, alice, one.id)

	// Over the limit: the count only.
	two := joinBot(t, base, "pres", "Bot2")
	three := joinBot(t, base, "pres", "Bot3")
	p.waitFor("the room to show its count only", `document.getElementById("count").textContent === "4" &&
		document.querySelector("#members li.large") !== null`)
	t.Logf("screenshot of a large room: %s", p.screenshot(t.TempDir(), "chat-large-room.png"))
	two.c.Close(websocket.StatusNormalClosure, "")
	three.c.Close(websocket.StatusNormalClosure, "")
	waitMembers(p, alice, one.id) // lists are back: the page asked who again
	say(p, "still here")
	waitMessage(p, "said", "still here")
}
