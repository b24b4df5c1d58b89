package wsactor_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/routing"
)

type sayMsg struct {
	Text string `json:"text"`
}

type addMsg struct {
	A, B int
}

func chatRouter(policy routing.BadMessagePolicy) *wsactor.Router {
	r := &wsactor.Router{BadMessages: policy}
	wsactor.On(r, "say", func(c *wsactor.Conn, m sayMsg) error {
		switch m.Text {
		case "":
			return wsactor.MessageError("empty_text", "say something")
		case "boom":
			return errors.New("database unavailable")
		case "bye":
			return wsactor.CloseWith(4000, "bye")
		}
		return c.SendJSON(map[string]string{"type": "said", "text": m.Text, "room": c.PathValue("room")})
	})
	wsactor.OnRequest(r, "add", func(c *wsactor.Conn, m addMsg) (int, error) {
		if m.A < 0 {
			return 0, wsactor.MessageError("negative", "only natural numbers")
		}
		return m.A + m.B, nil
	})
	return r
}

func TestMessageRouting(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		r := chatRouter(routing.ReplyError)
		s.Handle("/ws/{room}", func() wsactor.Handler { return r })
	})
	c := dial(t, ts.url+"/ws/lobby")
	for _, tc := range []struct {
		name, send, want string
	}{
		{"typed handler", `{"type":"say","text":"hi"}`, `{"room":"lobby","text":"hi","type":"said"}`},
		{"request with a numeric req", `{"type":"add","req":7,"A":2,"B":3}`, `{"data":5,"req":7,"type":"reply"}`},
		{"request with a string req", `{"type":"add","req":"q-1","A":1,"B":1}`, `{"data":2,"req":"q-1","type":"reply"}`},
		{"request without req", `{"type":"add","A":1,"B":1}`, `{"data":2,"type":"reply"}`},
		{"malformed JSON", `{"type":"say",`, `{"code":"bad_json","error":"malformed JSON: unexpected end of JSON input (at byte 14)","message":"malformed JSON: unexpected end of JSON input (at byte 14)","type":"error"}`},
		{"not an object", `[1,2,3]`, `{"code":"bad_json","error":"message is not a JSON object","message":"message is not a JSON object","type":"error"}`},
		{"plain text", `hello`, `{"code":"bad_json","error":"message is not a JSON object","message":"message is not a JSON object","type":"error"}`},
		{"missing type", `{"text":"hi"}`, `{"code":"missing_type","error":"message has no \"type\"","message":"message has no \"type\"","type":"error"}`},
		{"type not a string", `{"type":3}`, `{"code":"missing_type","error":"\"type\" must be a non-empty string","message":"\"type\" must be a non-empty string","type":"error"}`},
		{"unknown type", `{"type":"fly","req":1}`, `{"code":"unknown_type","error":"no handler for type \"fly\"","message":"no handler for type \"fly\"","ref":"fly","req":1,"type":"error"}`},
		{"payload of the wrong shape", `{"type":"say","text":42}`, `{"code":"bad_payload","error":"payload does not fit type say: field \"text\" has the wrong type (got number)","message":"payload does not fit type say: field \"text\" has the wrong type (got number)","ref":"say","type":"error"}`},
		{"bad req", `{"type":"add","req":{"x":1},"A":1}`, `{"code":"bad_req","error":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","message":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","type":"error"}`},
		{"req JavaScript reads as Infinity", `{"type":"add","req":1e400,"A":1}`, `{"code":"bad_req","error":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","message":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","type":"error"}`},
		{"req of 5,000 digits", `{"type":"add","req":` + strings.Repeat("7", 5000) + `,"A":1}`, `{"code":"bad_req","error":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","message":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","type":"error"}`},
		{"req string too long", `{"type":"add","req":"` + strings.Repeat("q", 65) + `","A":1}`, `{"code":"bad_req","error":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","message":"\"req\" must be a string of at most 64 bytes or an integer between -9007199254740991 and 9007199254740991","type":"error"}`},
		{"handler's own error", `{"type":"say","text":""}`, `{"code":"empty_text","error":"say something","message":"say something","ref":"say","type":"error"}`},
		{"request handler's error keeps req", `{"type":"add","req":9,"A":-1}`, `{"code":"negative","error":"only natural numbers","message":"only natural numbers","ref":"add","req":9,"type":"error"}`},
		{"handler failure is not leaked", `{"type":"say","text":"boom"}`, `{"code":"internal","error":"internal error","message":"internal error","ref":"say","type":"error"}`},
		{"binary without a binary handler", "\x00\x01", `{"code":"unsupported","error":"binary messages are not supported here","message":"binary messages are not supported here","type":"error"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ := websocket.MessageText
			if strings.HasPrefix(tc.send, "\x00") {
				typ = websocket.MessageBinary
			}
			write(t, c, typ, tc.send)
			if got := canonicalJSON(t, readText(t, c)); got != tc.want {
				t.Fatalf("sent %s\n got %s\nwant %s", tc.send, got, tc.want)
			}
		})
	}
	if !strings.Contains(ts.logs.String(), "database unavailable") {
		t.Fatal("the handler's failure should be logged")
	}
	// An On message with a "req" is acknowledged after what its handler
	// sent; its error carries the req instead.
	write(t, c, websocket.MessageText, `{"type":"say","req":"a-1","text":"ack me"}`)
	for _, want := range []string{`{"room":"lobby","text":"ack me","type":"said"}`, `{"data":null,"req":"a-1","type":"reply"}`} {
		if got := canonicalJSON(t, readText(t, c)); got != want {
			t.Fatalf("acknowledged message:\n got %s\nwant %s", got, want)
		}
	}
	write(t, c, websocket.MessageText, `{"type":"say","req":5,"text":""}`)
	if got, want := canonicalJSON(t, readText(t, c)), `{"code":"empty_text","error":"say something","message":"say something","ref":"say","req":5,"type":"error"}`; got != want {
		t.Fatalf("failed acknowledged message:\n got %s\nwant %s", got, want)
	}
	// After all of that the connection is still open and routing.
	write(t, c, websocket.MessageText, `{"type":"say","text":"bye"}`)
	wantClose(t, c, 4000, "bye")
}

func TestMessageRoutingClosePolicy(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		r := chatRouter(routing.CloseConnection)
		s.Handle("/ws/{room}", func() wsactor.Handler { return r })
	})
	for _, tc := range []struct {
		name   string
		typ    websocket.MessageType
		send   string
		code   websocket.StatusCode
		reason string
	}{
		{"malformed JSON", websocket.MessageText, `{`, websocket.StatusInvalidFramePayloadData, "bad_json: malformed JSON: unexpected end of JSON input (at byte 1)"},
		{"missing type", websocket.MessageText, `{}`, websocket.StatusInvalidFramePayloadData, `missing_type: message has no "type"`},
		{"unknown type", websocket.MessageText, `{"type":"fly"}`, websocket.StatusUnsupportedData, `unknown_type: no handler for type "fly"`},
		{"wrong shape", websocket.MessageText, `{"type":"say","text":[]}`, websocket.StatusInvalidFramePayloadData, "*"},
		{"binary", websocket.MessageBinary, "\x01", websocket.StatusUnsupportedData, "unsupported: binary messages are not supported here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.url+"/ws/x")
			write(t, c, tc.typ, tc.send)
			wantClose(t, c, tc.code, tc.reason)
		})
	}
	// A handler's own error is still an envelope under the close policy.
	c := dial(t, ts.url+"/ws/x")
	write(t, c, websocket.MessageText, `{"type":"say","text":""}`)
	if got := canonicalJSON(t, readText(t, c)); !strings.Contains(got, `"code":"empty_text"`) {
		t.Fatalf("got %s", got)
	}
}

// roomChat embeds a Router and adds lifecycle methods.
type roomChat struct {
	*wsactor.Router
}

func (roomChat) OnOpen(c *wsactor.Conn) error {
	return c.SendJSON(map[string]string{"type": "welcome", "room": c.PathValue("room")})
}

func TestRouterEmbeddedInHandler(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		r := chatRouter(routing.ReplyError)
		r.Binary = func(c *wsactor.Conn, data []byte) error { return c.SendBinary(append([]byte("bin:"), data...)) }
		s.Handle("/ws/{room}", func() wsactor.Handler { return roomChat{r} })
	})
	c := dial(t, ts.url+"/ws/dev")
	if got := canonicalJSON(t, readText(t, c)); got != `{"room":"dev","type":"welcome"}` {
		t.Fatalf("got %s", got)
	}
	write(t, c, websocket.MessageText, `{"type":"say","text":"yo"}`)
	if got := canonicalJSON(t, readText(t, c)); got != `{"room":"dev","text":"yo","type":"said"}` {
		t.Fatalf("got %s", got)
	}
	write(t, c, websocket.MessageBinary, "\x09")
	if typ, got := read(t, c); typ != websocket.MessageBinary || got != "bin:\x09" {
		t.Fatalf("binary handler: %v %q", typ, got)
	}
}

// canonicalJSON re-encodes a JSON object with sorted keys.
func canonicalJSON(t *testing.T, s string) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not a JSON object: %q", s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
