package e2e

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"reflect"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/client/web"
)

// The browser client's tests run scenarios in a page that imports
// /wsactor.js, against a wsactor server with a Router built for them.

const clientPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>wsactor.js test</title></head>
<body><p id="ready" hidden>ready</p>
<script type="module">
import * as wsactor from "/wsactor.js";
window.wsactor = wsactor;
// until resolves once pred() is truthy, or rejects after ms.
window.until = (pred, ms = 10000) => new Promise((resolve, reject) => {
  const start = Date.now();
  (function check() {
    let v;
    try { v = pred(); } catch (e) { reject(e); return; }
    if (v) resolve(v);
    else if (Date.now() - start > ms) reject(new Error("until: timed out: " + pred));
    else setTimeout(check, 5);
  })();
});
document.getElementById("ready").hidden = false;
</script></body></html>`

type (
	addMsg   struct{ A, B int }
	closeMsg struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	testConn struct{ *wsactor.Router }
	// muteConn never answers: a request to it can only time out.
	muteConn struct{}
)

func (muteConn) OnMessage(*wsactor.Conn, wsactor.Message) error { return nil }

func (testConn) OnOpen(c *wsactor.Conn) error {
	return c.SendJSON(map[string]string{"type": "hello", "id": string(c.ID()), "query": c.URL().RawQuery, "protocol": c.Subprotocol()})
}

func newTestRouter() *wsactor.Router {
	r := &wsactor.Router{}
	wsactor.OnRequest(r, "add", func(_ *wsactor.Conn, m addMsg) (int, error) {
		if m.A < 0 {
			return 0, wsactor.MessageError("negative", "only natural numbers")
		}
		return m.A + m.B, nil
	})
	wsactor.On(r, "echo", func(c *wsactor.Conn, m map[string]any) error {
		return c.SendJSON(map[string]any{"type": "echoed", "got": m})
	})
	wsactor.On(r, "plain", func(c *wsactor.Conn, _ struct{}) error { return c.SendText("not json") })
	wsactor.On(r, "silent", func(*wsactor.Conn, struct{}) error { return nil })
	wsactor.On(r, "close", func(_ *wsactor.Conn, m closeMsg) error {
		return wsactor.CloseWith(wsactor.StatusCode(m.Code), m.Reason)
	})
	return r
}

// clientFixture serves the test page, the module and the test routes, and
// opens the page.
func clientFixture(t *testing.T) *page {
	t.Helper()
	browser := newBrowser(t)
	s := wsactor.New(wsactor.Options{Logger: slog.New(slog.DiscardHandler)})
	router := newTestRouter()
	s.Handle("/ws/test", func() wsactor.Handler { return testConn{router} })
	s.Handle("/ws/proto", func() wsactor.Handler { return testConn{router} }, wsactor.WithSubprotocols("chat.v1"))
	s.Handle("/ws/mute", func() wsactor.Handler { return muteConn{} })
	addWhoami(router)
	s.Handle("/ws/auth", func() wsactor.Handler { return testConn{router} }, authRoute()...)
	mux := http.NewServeMux()
	mux.Handle("/ws/", s)
	mux.Handle("GET /wsactor.js", web.Handler())
	mux.Handle("GET /token", tokenHandler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(clientPage))
	})
	l := listen(t, "127.0.0.1:0")
	serve(t, s, mux, l)

	p := newPage(t, browser, "client")
	p.do(chromedp.Navigate("http://"+l.Addr().String()+"/"), chromedp.WaitVisible(chromedp.ID("ready")))
	return p
}

// run evaluates an async scenario and decodes its JSON result into v.
func run(p *page, scenario string, v any) {
	p.t.Helper()
	raw := eval[string](p, `(async () => JSON.stringify(await (`+scenario+`)()))()`)
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		p.t.Fatalf("scenario result %s: %v", raw, err)
	}
}

func TestBrowserClient(t *testing.T) {
	p := clientFixture(t)

	t.Run("messages", func(t *testing.T) {
		p.t = t
		var res struct {
			States  []string
			Opens   int
			Hello   map[string]string
			Sum     int
			Neg     map[string]any
			Unknown map[string]any
			Echoed  map[string]any
			Extra   int
			Plain   map[string]any
			Ack     any
			Timeout string
			Sent    bool
		}
		run(p, `async () => {
			const states = [], msgs = [];
			let opens = 0, extra = 0;
			const c = wsactor.connect("/ws/test", {
				onStateChange: (s) => states.push(s),
				onOpen: () => opens++,
				onMessage: (m) => msgs.push(m),
			});
			const hello = await new Promise((res) => c.on("hello", res));
			const sum = await c.request("add", { A: 2, B: 40 });
			const neg = await c.request("add", { A: -1, B: 1 }).then(() => null,
				(e) => ({ name: e.name, code: e.code, message: e.message, ref: e.envelope.ref, req: e.envelope.req }));
			const unknown = await c.request("nope").then(() => null, (e) => ({ code: e.code, ref: e.envelope.ref }));
			const off = c.on("echoed", () => extra++);
			off();
			const echoed = new Promise((res) => c.on("echoed", res));
			const sent = c.send("echo", { type: "ignored", x: 1, nested: { a: [1, "b"] } });
			const e = await echoed;
			c.send("plain");
			const plain = await until(() => msgs.find((m) => m.type === ""));
			// An On handler acknowledges a message with a "req" with a null reply.
			const ack = await c.request("silent", {}, { timeout: 5000 }).then((v) => v, (e) => e.code);
			const mute = wsactor.connect("/ws/mute");
			await until(() => mute.state === "open");
			const timeout = await mute.request("anything", {}, { timeout: 50 }).then(() => "", (e) => e.code);
			mute.close();
			c.close();
			return { states, opens, hello, sum, neg, unknown, echoed: e.got, extra, plain, ack, timeout, sent };
		}`, &res)
		if want := []string{"connecting", "open", "closed"}; !reflect.DeepEqual(res.States, want) {
			t.Errorf("states %v, want %v", res.States, want)
		}
		if res.Opens != 1 || res.Hello["id"] == "" {
			t.Errorf("opens %d, hello %v", res.Opens, res.Hello)
		}
		if res.Sum != 42 {
			t.Errorf("add: %d", res.Sum)
		}
		if res.Neg["name"] != "RequestError" || res.Neg["code"] != "negative" || res.Neg["message"] != "only natural numbers" ||
			res.Neg["ref"] != "add" || res.Neg["req"] == nil {
			t.Errorf("error envelope: %v", res.Neg)
		}
		if res.Unknown["code"] != wsactor.CodeUnknownType || res.Unknown["ref"] != "nope" {
			t.Errorf("unknown type: %v", res.Unknown)
		}
		// The flat envelope: the type first and not overridable, the payload beside it.
		if want := map[string]any{"type": "echo", "x": 1.0, "nested": map[string]any{"a": []any{1.0, "b"}}}; !reflect.DeepEqual(res.Echoed, want) {
			t.Errorf("echo got %v, want %v", res.Echoed, want)
		}
		if !res.Sent || res.Extra != 0 {
			t.Errorf("send returned %v; a removed handler ran %d times", res.Sent, res.Extra)
		}
		if res.Plain["raw"] != "not json" {
			t.Errorf("plain text: %v", res.Plain)
		}
		if res.Ack != nil {
			t.Errorf("request to an On handler: %v, want a null reply", res.Ack)
		}
		if res.Timeout != "timeout" {
			t.Errorf("request nobody answers: %q, want timeout", res.Timeout)
		}
	})

	t.Run("reconnect", func(t *testing.T) {
		p.t = t
		var res struct {
			States    []string
			Opens     int
			IDs       []string
			Queries   []string
			Pending   string
			LastClose map[string]any
			Delay     float64
			Protocol  string
		}
		run(p, `async () => {
			const states = [], ids = [], queries = [];
			let opens = 0, n = 0, delay = -1, protocol = "";
			const c = wsactor.connect(() => "/ws/proto?attempt=" + (++n), {
				protocols: ["chat.v1"],
				minBackoff: 10, maxBackoff: 40,
				onStateChange: (s, info) => {
					states.push(s);
					if (s === "reconnecting") delay = info.delay;
					if (s === "open") protocol = info.protocol;
				},
				onOpen: () => opens++,
			});
			c.on("hello", (m) => { ids.push(m.id); queries.push(m.query); });
			await until(() => ids.length === 1);
			// 1012 "service restart" is worth retrying; the request it interrupted fails.
			const pending = await c.request("close", { code: 1012, reason: "restart" }).then(() => "", (e) => e.code);
			const lastClose = c.lastClose;
			await until(() => ids.length === 2 && c.state === "open");
			c.close();
			return { states, opens, ids, queries, pending, lastClose, delay, protocol };
		}`, &res)
		if want := []string{"connecting", "open", "reconnecting", "connecting", "open", "closed"}; !reflect.DeepEqual(res.States, want) {
			t.Errorf("states %v, want %v", res.States, want)
		}
		if res.Opens != 2 || len(res.IDs) != 2 || res.IDs[0] == res.IDs[1] {
			t.Errorf("onOpen ran %d times; ids %v", res.Opens, res.IDs)
		}
		if want := []string{"attempt=1", "attempt=2"}; !reflect.DeepEqual(res.Queries, want) {
			t.Errorf("the URL function was not called per attempt: %v", res.Queries)
		}
		if res.Pending != "disconnected" {
			t.Errorf("pending request: %q, want disconnected", res.Pending)
		}
		if res.LastClose["code"] != 1012.0 || res.LastClose["reason"] != "restart" {
			t.Errorf("lastClose %v", res.LastClose)
		}
		if res.Delay < 0 || res.Delay >= 10 { // first attempt: [0, minBackoff)
			t.Errorf("first reconnection delay %v, want [0, 10)", res.Delay)
		}
		if res.Protocol != "chat.v1" {
			t.Errorf("subprotocol %q", res.Protocol)
		}
	})

	t.Run("close codes", func(t *testing.T) {
		p.t = t
		var res map[string]struct {
			States []string
			Text   string
		}
		run(p, `async () => {
			const out = {};
			await Promise.all([1000, 1003, 1008, 1009, 3000, 4000, 4999, 1001, 1011, 1013, 2999].map(async (code) => {
				const states = [];
				// What the page would show when the close arrives, taken as
				// the state changes: the reconnection's delay is random in
				// [0, 5 s), and a look at c.state a few milliseconds later
				// can find it connecting again, or open.
				let settled = null;
				const c = wsactor.connect("/ws/test", { minBackoff: 5000, maxBackoff: 5000, onStateChange: (s, _, client) => {
					states.push(s);
					if (!settled && (s === "closed" || s === "reconnecting")) settled = { states: [...states], text: client.stateText() };
				} });
				await until(() => c.state === "open");
				c.send("close", { code, reason: "bye" });
				await until(() => settled);
				out[code] = settled;
				c.close();
			}));
			return out;
		}`, &res)
		for code, wantFinal := range map[string]bool{
			"1000": true, "1003": true, "1008": true, "1009": true, "3000": true, "4000": true, "4999": true,
			"1001": false, "1011": false, "1013": false,
		} {
			r := res[code]
			last := r.States[len(r.States)-1]
			if wantFinal && (last != "closed" || r.Text != "closed ("+code+" bye)") {
				t.Errorf("close %s: states %v, %q; want it final", code, r.States, r.Text)
			}
			if !wantFinal && (last != "reconnecting" || len(r.Text) < len("reconnecting in 1s")) {
				t.Errorf("close %s: states %v, %q; want a reconnection", code, r.States, r.Text)
			}
		}
		// 2999 cannot be sent: the server closes with 1011 instead, and that is retried.
		if r := res["2999"]; r.States[len(r.States)-1] != "reconnecting" {
			t.Errorf("close 2999: %v", r)
		}
	})

	t.Run("app close and online", func(t *testing.T) {
		p.t = t
		var res struct {
			Closed, AfterOnline, Text string
			Sent                      bool
			Request                   string
			Opens                     int
		}
		run(p, `async () => {
			let opens = 0;
			const c = wsactor.connect("/ws/test", { minBackoff: 600000, maxBackoff: 600000, onOpen: () => opens++ });
			await until(() => c.state === "open");
			c.send("close", { code: 1011, reason: "oops" });
			await until(() => c.state === "reconnecting");
			window.dispatchEvent(new Event("online")); // back online: retry now, not in minutes
			await until(() => c.state === "open" && opens === 2);
			c.close();
			const sent = c.send("echo", {});
			const request = await c.request("add", { A: 1, B: 1 }).then(() => "", (e) => e.code);
			window.dispatchEvent(new Event("online")); // no effect on a closed client
			return { closed: c.state, text: c.stateText(), afterOnline: c.state, sent, request, opens };
		}`, &res)
		if res.Closed != "closed" || res.Text != "closed" || res.AfterOnline != "closed" || res.Sent || res.Request != "closed" || res.Opens != 2 {
			t.Errorf("%+v", res)
		}
	})

	t.Run("credential refresh", func(t *testing.T) {
		p.t = t
		testCredentialRefresh(p)
	})

	t.Run("credential refresh failures", func(t *testing.T) {
		p.t = t
		testCredentialRefreshFailures(p)
	})

	t.Run("backoff", func(t *testing.T) {
		p.t = t
		var res struct{ Max, Zero []int }
		run(p, `async () => ({
			max: [1, 2, 3, 4, 5, 8, 60].map((n) => wsactor.backoffDelay(n, 100, 1000, () => 0.999999)),
			zero: [1, 5].map((n) => wsactor.backoffDelay(n, 100, 1000, () => 0)),
		})`, &res)
		if want := []int{99, 199, 399, 799, 999, 999, 999}; !reflect.DeepEqual(res.Max, want) {
			t.Errorf("ceilings %v, want %v", res.Max, want)
		}
		if want := []int{0, 0}; !reflect.DeepEqual(res.Zero, want) {
			t.Errorf("full jitter reaches zero: %v", res.Zero)
		}
	})
}
