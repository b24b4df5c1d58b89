package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/examples/chat/chatserver"
)

const chatAdminToken = "T"

// chatNode is the chat example running on a pool node. A chat server takes
// the server name "ws" in its node's actor system, and a server's groups keep
// their name after Shutdown, so each node runs one for the whole binary.
type chatNode struct {
	srv *wsactor.Server
	url string // http://127.0.0.1:port
}

// chatNodes returns the chat example on nodes a[0] and a[1].
func (p *pool) chatNodes() []*chatNode {
	p.chatOnce.Do(func() {
		for _, n := range p.a[:2] {
			mux, s := chatserver.New(chatserver.Config{Node: n.Node, AdminToken: chatAdminToken, Logger: slog.New(n.logs)})
			hs := httptest.NewServer(mux)
			p.closers = append(p.closers, hs.Close)
			p.chat = append(p.chat, &chatNode{srv: s, url: hs.URL})
		}
	})
	return p.chat
}

// chatClient is a chat connection.
type chatClient struct {
	t  *testing.T
	c  *websocket.Conn
	id string
}

func (n *chatNode) join(t *testing.T, room, name string) *chatClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(n.url, "http") + "/ws/chat/" + room + "?name=" + name
	c, _, err := websocket.Dial(testCtx(t), url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	cl := &chatClient{t: t, c: c}
	cl.id = cl.expect("welcome")["id"].(string)
	return cl
}

// expect returns the next message of type typ, skipping presence events
// (a member may hear joins, its own included, in any batching).
func (cl *chatClient) expect(typ string) map[string]any {
	cl.t.Helper()
	for {
		_, b, err := cl.c.Read(testCtx(cl.t))
		if err != nil {
			cl.t.Fatalf("chat client %s: read: %v", cl.id, err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			cl.t.Fatalf("chat client %s: %s is not JSON", cl.id, b)
		}
		if m["type"] == typ {
			return m
		}
		if m["type"] != "presence" {
			cl.t.Fatalf("chat client %s: got %s, want a %q message", cl.id, b, typ)
		}
	}
}

// presenceEntry waits for a presence event with id in its list ("joins" or
// "leaves") and returns the entry, skipping every other message.
func (cl *chatClient) presenceEntry(list, id string) map[string]any {
	cl.t.Helper()
	for {
		m := cl.expect("presence")
		entries, _ := m[list].([]any)
		for _, e := range entries {
			if e, _ := e.(map[string]any); e["id"] == id {
				return e
			}
		}
	}
}

func (cl *chatClient) send(v any) {
	cl.t.Helper()
	b, _ := json.Marshal(v)
	if err := cl.c.Write(testCtx(cl.t), websocket.MessageText, b); err != nil {
		cl.t.Fatalf("chat client %s: write: %v", cl.id, err)
	}
}

// admin calls the admin API of n.
func (n *chatNode) admin(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, n.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+chatAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestChatExampleAcrossNodes runs examples/chat on two nodes: its admin API
// on node one reaches a client on node two, a room's members span the nodes,
// and a DM crosses them.
func TestChatExampleAcrossNodes(t *testing.T) {
	p := getPool(t)
	dumpLogsOnFailure(t, p.a[:2]...)
	chat := p.chatNodes()
	one, two := chat[0], chat[1]
	room := testSeq("room")

	bob := two.join(t, room, "bob")
	ann := one.join(t, room, "ann")
	if j := bob.presenceEntry("joins", ann.id); j["name"] != "ann" {
		t.Fatalf("bob on node two: %v, want ann's join", j)
	}

	// POST /api/send on node one, to bob on node two.
	if status, body := one.admin(t, "POST", "/api/send", map[string]string{"to": bob.id, "text": "hello bob"}); status != http.StatusOK {
		t.Fatalf("POST /api/send: %d %s", status, body)
	}
	if m := bob.expect("notice"); m["text"] != "hello bob" {
		t.Fatalf("bob got %v", m)
	}

	// The members of the room, asked on node one, are on both nodes.
	status, body := one.admin(t, "GET", "/api/rooms/"+room+"/members", nil)
	var members []struct{ ID, Name string }
	if status != http.StatusOK || json.Unmarshal(body, &members) != nil {
		t.Fatalf("GET members: %d %s", status, body)
	}
	slices.SortFunc(members, func(a, b struct{ ID, Name string }) int { return strings.Compare(a.Name, b.Name) })
	if len(members) != 2 || members[0].ID != ann.id || members[0].Name != "ann" || members[1].ID != bob.id || members[1].Name != "bob" {
		t.Fatalf("members of %s from node one: %s", room, body)
	}

	// A DM from ann on node one to bob on node two, and back.
	ann.send(map[string]string{"type": "dm", "to": bob.id, "text": "psst"})
	if m := bob.expect("dm"); m["from"] != ann.id || m["name"] != "ann" || m["text"] != "psst" {
		t.Fatalf("bob got %v", m)
	}
	bob.send(map[string]string{"type": "dm", "to": ann.id, "text": "what"})
	if m := ann.expect("dm"); m["from"] != bob.id || m["text"] != "what" {
		t.Fatalf("ann got %v", m)
	}
	// Saying in the room reaches both nodes.
	bob.send(map[string]string{"type": "say", "text": "hi all"})
	for _, cl := range []*chatClient{ann, bob} {
		if m := cl.expect("said"); m["id"] != bob.id || m["text"] != "hi all" {
			t.Fatalf("%s got %v", cl.id, m)
		}
	}
	// The broadcast API of node two reaches ann on node one.
	if status, body := two.admin(t, "POST", "/api/rooms/"+room+"/broadcast", map[string]string{"text": "to the room"}); status != http.StatusOK {
		t.Fatalf("POST broadcast: %d %s", status, body)
	}
	for _, cl := range []*chatClient{ann, bob} {
		if m := cl.expect("notice"); m["text"] != "to the room" {
			t.Fatalf("%s got %v", cl.id, m)
		}
	}

	// POST /api/close on node one closes bob on node two with the code.
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := bob.c.Read(context.Background()); err != nil {
				closed <- err
				return
			}
		}
	}()
	if status, body := one.admin(t, "POST", "/api/close", map[string]any{"id": bob.id, "code": 4007, "reason": "kicked"}); status != http.StatusOK {
		t.Fatalf("POST /api/close: %d %s", status, body)
	}
	wantCloseCode(t, closed, 4007, "kicked")
	if m := ann.presenceEntry("leaves", bob.id); m["name"] != "bob" {
		t.Fatalf("ann got %v, want bob's leave", m)
	}
	if status, _ := one.admin(t, "POST", "/api/send", map[string]string{"to": bob.id, "text": "gone?"}); status != http.StatusNotFound {
		t.Fatalf("POST /api/send to a closed connection on node two: %d, want 404", status)
	}
}
