package e2e

import (
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
)

// The browser client's credential refresh runs against /ws/auth: auth.JWT
// (HS256) with WithCredentialRefresh. The page gets its tokens from
// /token?sub=ann&n=1&life=2: user ann's token number n (its "n" claim),
// expiring life seconds from now, rounded down to a whole second (golang-jwt
// keeps whole seconds), so life=2 expires 1 to 2 s after issue.

var refreshKey = []byte("e2e-refresh-key-0123456789abcdef")

// refreshGrace is how long the server waits for a new token once it asks.
const refreshGrace = time.Second

func authRoute() []wsactor.RouteOption {
	return []wsactor.RouteOption{
		wsactor.WithSubprotocols("chat.v1"),
		wsactor.WithAuthenticator(&auth.JWT{Key: refreshKey}),
		wsactor.RequireAuth(),
		wsactor.WithCredentialRefresh(refreshGrace),
	}
}

func tokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, err1 := strconv.Atoi(q.Get("n"))
		life, err2 := strconv.Atoi(q.Get("life"))
		if err1 != nil || err2 != nil || q.Get("sub") == "" {
			http.Error(w, "want sub, n and life", http.StatusBadRequest)
			return
		}
		exp := time.Now().Add(time.Duration(life) * time.Second).Unix()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": q.Get("sub"), "n": n, "exp": exp}).SignedString(refreshKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(tok))
	})
}

// whoami tells who the server thinks the connection is: the user, the "n"
// claim of its token, and its expiry (Unix seconds).
type whoami struct {
	User string `json:"user"`
	N    int    `json:"n"`
	Exp  int64  `json:"exp"`
}

func addWhoami(r *wsactor.Router) {
	wsactor.OnRequest(r, "whoami", func(c *wsactor.Conn, _ struct{}) (whoami, error) {
		u := c.User()
		if u == nil {
			return whoami{}, nil
		}
		n, _ := u.Claims["n"].(float64)
		return whoami{User: u.ID, N: int(n), Exp: u.Expires.Unix()}, nil
	})
}

func testCredentialRefresh(p *page) {
	t := p.t
	var res struct {
		Issued                       []int
		Protocol                     string
		First, Second, Third, Fourth whoami
		PastExpiry                   bool
		Expires                      string
		Msgs, States                 []string
	}
	run(p, `async () => {
		const issued = [], msgs = [], states = [];
		const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
		const token = async () => {
			const n = issued.length + 1;
			issued.push(n);
			const r = await fetch("/token?sub=ann&n=" + n + "&life=" + (n === 1 ? 2 : 3600));
			return r.text();
		};
		let hello = null;
		const c = wsactor.connect("/ws/auth", {
			protocols: ["chat.v1"], token, minBackoff: 10, maxBackoff: 40,
			onMessage: (m) => msgs.push(m.type),
			onStateChange: (s) => states.push(s),
		});
		c.on("hello", (m) => { hello = hello || m; });
		await until(() => c.state === "open" && hello);
		const first = await c.request("whoami");
		// The first token expires: the server asks, the client answers by itself.
		await until(() => issued.length === 2);
		let second;
		const deadline = Date.now() + 10000;
		while ((second = await c.request("whoami")).n !== 2) {
			if (Date.now() > deadline) throw new Error("the server never got token 2");
			await sleep(10);
		}
		const pastExpiry = Date.now() > first.exp * 1000;
		// refresh() sends one unasked and resolves with the acknowledged expiry.
		const expires = await c.refresh();
		const third = await c.request("whoami");
		// A reconnection gets a fresh token.
		c.send("close", { code: 1012, reason: "restart" });
		await until(() => states.filter((s) => s === "open").length === 2);
		const fourth = await c.request("whoami");
		c.close();
		return { issued, protocol: hello.protocol, first, second, pastExpiry, expires, third, fourth, msgs, states };
	}`, &res)
	if want := []int{1, 2, 3, 4}; !reflect.DeepEqual(res.Issued, want) {
		t.Errorf("token function calls %v, want %v", res.Issued, want)
	}
	if res.Protocol != "chat.v1" {
		t.Errorf("negotiated %q: the protocols option and the token do not go together", res.Protocol)
	}
	for i, w := range []whoami{res.First, res.Second, res.Third, res.Fourth} {
		if w.User != "ann" || w.N != i+1 {
			t.Errorf("whoami %d: %+v, want ann's token %d", i+1, w, i+1)
		}
	}
	if !res.PastExpiry {
		t.Errorf("refreshed before the first token expired")
	}
	if exp, err := time.Parse(time.RFC3339Nano, res.Expires); err != nil || exp.Unix() != res.Third.Exp {
		t.Errorf("refresh() resolved with %q (%v), token 3 expires at %d", res.Expires, err, res.Third.Exp)
	}
	if want := []string{"hello", "hello"}; !reflect.DeepEqual(res.Msgs, want) {
		t.Errorf("onMessage got %v, want %v: the refresh protocol leaked", res.Msgs, want)
	}
	if want := []string{"connecting", "open", "reconnecting", "connecting", "open", "closed"}; !reflect.DeepEqual(res.States, want) {
		t.Errorf("states %v, want %v", res.States, want)
	}
}

func testCredentialRefreshFailures(p *page) {
	t := p.t
	type closed struct {
		States     []string
		Calls      int
		Code       int
		Reason     string
		TokenError string
		Refresh    string
	}
	var res struct {
		Closed  map[string]closed
		Retried struct {
			States   [][2]string
			Calls, N int
		}
		Refused closed
	}
	run(p, `async () => {
		const mint = async (sub, n, life) => (await fetch("/token?sub=" + sub + "&n=" + n + "&life=" + life)).text();
		// Each case answers the server's ask with second().
		const cases = {
			throws: () => { throw new Error("issuer down"); },
			empty: async () => "",
			invalid: async () => "not-a-jwt",
			eve: () => mint("eve", 2, 3600),
		};
		const out = { closed: {} };
		await Promise.all(Object.entries(cases).map(async ([name, second]) => {
			let calls = 0;
			const states = [];
			const c = wsactor.connect("/ws/auth", {
				token: () => (++calls === 1 ? mint("ann", 1, 2) : second()),
				minBackoff: 10, maxBackoff: 40,
				onStateChange: (s) => states.push(s),
			});
			await until(() => c.state === "closed", 15000);
			const l = c.lastClose;
			out.closed[name] = { states, calls, code: l.code, reason: l.reason, tokenError: l.tokenError ? String(l.tokenError) : "" };
		}));
		{ // A token function that fails before an attempt: retried after the backoff.
			let calls = 0;
			const states = [];
			const c = wsactor.connect("/ws/auth", {
				token: async () => { if (++calls === 1) throw new Error("not yet"); return mint("ann", calls, 3600); },
				minBackoff: 10, maxBackoff: 40,
				onStateChange: (s, info) => states.push([s, info.tokenError ? String(info.tokenError) : ""]),
			});
			await until(() => c.state === "open");
			const who = await c.request("whoami");
			c.close();
			out.retried = { states, calls, n: who.n };
		}
		{ // refresh() with a token the server refuses.
			let calls = 0;
			const c = wsactor.connect("/ws/auth", { token: () => (++calls === 1 ? mint("ann", 1, 3600) : mint("eve", calls, 3600)) });
			await until(() => c.state === "open");
			const refresh = await c.refresh().then(() => "", (e) => e.code);
			await until(() => c.state === "closed");
			out.refused = { calls, code: c.lastClose.code, reason: c.lastClose.reason, refresh };
		}
		return out;
	}`, &res)

	for name, want := range map[string]closed{
		"throws":  {Reason: "credentials expired", TokenError: "Error: issuer down"},
		"empty":   {Reason: "credentials expired", TokenError: "Error: wsactor: the token function returned no token"},
		"invalid": {Reason: "invalid credentials"},
		"eve":     {Reason: "invalid credentials"},
	} {
		got := res.Closed[name]
		if got.Code != 1008 || got.Reason != want.Reason || got.TokenError != want.TokenError {
			t.Errorf("%s: closed with %d %q, tokenError %q; want 1008 %q, %q", name, got.Code, got.Reason, got.TokenError, want.Reason, want.TokenError)
		}
		// 1008 is final: no reconnection, so no third token.
		if want := []string{"connecting", "open", "closed"}; !reflect.DeepEqual(got.States, want) || got.Calls != 2 {
			t.Errorf("%s: states %v after %d token calls, want %v after 2", name, got.States, got.Calls, want)
		}
	}

	r := res.Retried
	if want := [][2]string{{"connecting", ""}, {"reconnecting", "Error: not yet"}, {"connecting", ""}, {"open", ""}, {"closed", ""}}; !reflect.DeepEqual(r.States, want) {
		t.Errorf("a failing token function before an attempt: states %v, want %v", r.States, want)
	}
	if r.Calls != 2 || r.N != 2 {
		t.Errorf("a failing token function before an attempt: %d calls, the server has token %d", r.Calls, r.N)
	}

	if f := res.Refused; f.Refresh != "disconnected" || f.Code != 1008 || f.Reason != "invalid credentials" {
		t.Errorf("refresh() with another user's token: %+v", f)
	}
}
