package wsactor_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/auth"
)

func init() {
	// Sub-second exp values keep the expiry tests short. Parsing accepts
	// fractional NumericDates whatever this is set to.
	jwt.TimePrecision = time.Millisecond
}

var hsSecret = []byte("test-secret-of-sufficient-length!!")

func signHS(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(hsSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claims returns valid claims for user sub, overridden by extra.
func claims(sub string, extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "iss": "wsactor-test", "aud": "chat", "exp": float64(time.Now().Add(time.Hour).UnixMilli()) / 1000, "rooms": []string{"lobby"}}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// whoami tells the client who it is, and rechecks an admin claim on demand.
type whoami struct{}

func (whoami) OnOpen(c *wsactor.Conn) error {
	who := "anonymous"
	if u := c.User(); u != nil {
		who = u.ID
	}
	return c.SendText(fmt.Sprintf("user=%s proto=%s room=%s", who, c.Subprotocol(), c.PathValue("room")))
}

func (whoami) OnMessage(c *wsactor.Conn, m wsactor.Message) error {
	if m.Text() == "admin only" {
		if err := c.Authorize(auth.RequireClaim("role", auth.Literal("admin"))); err != nil {
			return nil // Authorize has closed the connection
		}
	}
	return c.Send(m)
}

func authServer(t *testing.T, rsaKey *rsa.PublicKey, edKey ed25519.PublicKey) *testServer {
	hs := &auth.JWT{Key: hsSecret, Issuer: "wsactor-test", Audience: "chat"}
	newWhoami := func() wsactor.Handler { return whoami{} }
	return newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws/rooms/{room}", newWhoami, wsactor.WithAuthenticator(hs), wsactor.RequireAuth(),
			wsactor.WithPermissions(auth.RequireClaim("rooms", auth.PathValue("room"))))
		s.Handle("/ws/public", newWhoami, wsactor.WithAuthenticator(hs))
		s.Handle("/ws/rsa", newWhoami, wsactor.WithAuthenticator(&auth.JWT{Key: rsaKey}), wsactor.RequireAuth())
		s.Handle("/ws/ed", newWhoami, wsactor.WithAuthenticator(&auth.JWT{Key: edKey}), wsactor.RequireAuth())
		s.Handle("/ws/keys", newWhoami, wsactor.RequireAuth(), wsactor.WithAuthenticator(auth.Chain(
			&auth.APIKeys{Keys: map[string]*auth.User{"k-123": {ID: "bot"}}},
			hs,
		)))
		s.Handle("/ws/broken", newWhoami, wsactor.WithAuthenticator(auth.AuthenticatorFunc(func(*http.Request) (*auth.User, error) {
			return nil, errors.New("user database unreachable")
		})))
		s.Handle("/ws/short", newWhoami, wsactor.WithAuthenticator(hs), wsactor.RequireAuth())
		s.Handle("/ws/refresh", newWhoami, wsactor.WithAuthenticator(hs), wsactor.RequireAuth(), wsactor.WithCredentialRefresh(time.Second))
		s.Handle("/ws/public-refresh", newWhoami, wsactor.WithAuthenticator(hs), wsactor.WithCredentialRefresh(time.Second))
	})
}

func TestAuthentication(t *testing.T) {
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ts := authServer(t, &rsaPriv.PublicKey, edPub)

	valid := signHS(t, claims("ann", nil))
	bearer := func(tok string) *websocket.DialOptions {
		return &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}}
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("ann", nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&rsaPriv.PublicKey))})
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("ann", nil)).SignedString(pubPEM)
	rs256, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("rita", nil)).SignedString(rsaPriv)
	eddsa, _ := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims("ed", nil)).SignedString(edPriv)
	otherSecret, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("ann", nil)).SignedString([]byte("another-secret-of-sufficient-len!"))
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, claims("ann", nil)).SignedString(hsSecret)

	for _, tc := range []struct {
		name   string
		path   string
		opts   *websocket.DialOptions
		status int    // HTTP status before the upgrade, or 0 when accepted
		greet  string // first message when accepted
	}{
		{"no token, auth required", "/ws/rooms/lobby", nil, 401, ""},
		{"no token, anonymous allowed", "/ws/public", nil, 0, "user=anonymous proto= room="},
		{"valid token in Authorization header", "/ws/rooms/lobby", bearer(valid), 0, "user=ann proto= room=lobby"},
		{"valid token in query", "/ws/rooms/lobby?token=" + valid, nil, 0, "user=ann proto= room=lobby"},
		{"valid token in cookie", "/ws/rooms/lobby", &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {"token=" + valid}}}, 0, "user=ann proto= room=lobby"},
		{"valid token in Sec-WebSocket-Protocol", "/ws/rooms/lobby", &websocket.DialOptions{Subprotocols: []string{"bearer", valid}}, 0, "user=ann proto=bearer room=lobby"},
		{"bad signature", "/ws/rooms/lobby", bearer(otherSecret), 401, ""},
		{"tampered payload", "/ws/rooms/lobby", bearer(tamper(valid)), 401, ""},
		{"expired", "/ws/rooms/lobby", bearer(signHS(t, claims("ann", jwt.MapClaims{"exp": time.Now().Add(-time.Minute).Unix()}))), 401, ""},
		{"not yet valid", "/ws/rooms/lobby", bearer(signHS(t, claims("ann", jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}))), 401, ""},
		{"wrong audience", "/ws/rooms/lobby", bearer(signHS(t, claims("ann", jwt.MapClaims{"aud": "billing"}))), 401, ""},
		{"wrong issuer", "/ws/rooms/lobby", bearer(signHS(t, claims("ann", jwt.MapClaims{"iss": "evil"}))), 401, ""},
		{"no subject", "/ws/rooms/lobby", bearer(signHS(t, claims("", nil))), 401, ""},
		{"alg none", "/ws/rooms/lobby", bearer(none), 401, ""},
		{"HS512 where HS256 is pinned", "/ws/rooms/lobby", bearer(hs512), 401, ""},
		{"algorithm confusion: HS256 signed with the RSA public key", "/ws/rsa", bearer(confused), 401, ""},
		{"garbage token", "/ws/rooms/lobby", bearer("not.a.jwt"), 401, ""},
		{"garbage in query", "/ws/rooms/lobby?token=%00%ff", nil, 401, ""},
		{"header wins over a valid query token", "/ws/rooms/lobby?token=" + valid, bearer("garbage"), 401, ""},
		{"RS256", "/ws/rsa", bearer(rs256), 0, "user=rita proto= room="},
		{"EdDSA", "/ws/ed", bearer(eddsa), 0, "user=ed proto= room="},
		{"permission denied: room not in token", "/ws/rooms/secret", bearer(valid), 403, ""},
		{"API key", "/ws/keys", &websocket.DialOptions{HTTPHeader: http.Header{"X-Api-Key": {"k-123"}}}, 0, "user=bot proto= room="},
		{"wrong API key", "/ws/keys", &websocket.DialOptions{HTTPHeader: http.Header{"X-Api-Key": {"k-999"}}}, 401, ""},
		{"chain falls through to JWT", "/ws/keys", bearer(valid), 0, "user=ann proto= room="},
		{"authenticator failure", "/ws/broken", nil, 500, ""},
		{"cross-origin", "/ws/rooms/lobby", &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}, "Authorization": {"Bearer " + valid}}}, 403, ""},
		{"unknown path", "/ws/nowhere", bearer(valid), 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialErr(t, ts.url+tc.path, tc.opts)
			if tc.status != 0 {
				wantStatus(t, err, tc.status)
				return
			}
			if err != nil {
				t.Fatalf("want accepted, got %v", err)
			}
			if got := readText(t, c); got != tc.greet {
				t.Fatalf("got %q, want %q", got, tc.greet)
			}
		})
	}
	resp, err := http.Get(ts.http.URL + "/ws/rooms/lobby?token=" + valid)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain HTTP: want 426, got %d", resp.StatusCode)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// tamper changes the token's payload (now claiming user "eve") and keeps the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload := must(base64.RawURLEncoding.DecodeString(parts[1]))
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"ann"`, `"eve"`, 1)))
	return strings.Join(parts, ".")
}

func TestCredentialsExpireWhileConnected(t *testing.T) {
	ts := authServer(t, nil, nil)
	tok := signHS(t, claims("ann", jwt.MapClaims{"exp": float64(time.Now().Add(300*time.Millisecond).UnixMilli()) / 1000}))
	c, err := dialErr(t, ts.url+"/ws/short?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	readText(t, c)
	wantClose(t, c, websocket.StatusPolicyViolation, "credentials expired")
}

func TestAuthorizeLaterCloses1008(t *testing.T) {
	ts := authServer(t, nil, nil)
	c, err := dialErr(t, ts.url+"/ws/public?token="+signHS(t, claims("ann", nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	readText(t, c)
	write(t, c, websocket.MessageText, "admin only")
	wantClose(t, c, websocket.StatusPolicyViolation, "forbidden")

	admin, err := dialErr(t, ts.url+"/ws/public?token="+signHS(t, claims("root", jwt.MapClaims{"role": "admin"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	readText(t, admin)
	write(t, admin, websocket.MessageText, "admin only")
	if got := readText(t, admin); got != "admin only" {
		t.Fatalf("admin: %q", got)
	}
}

type refreshMsg struct {
	Type     string `json:"type"`
	Token    string `json:"token,omitempty"`
	Deadline string `json:"deadline,omitempty"`
	Expires  string `json:"expires,omitempty"`
}

func TestCredentialRefresh(t *testing.T) {
	ts := authServer(t, nil, nil)
	soon := func(sub string) string {
		return signHS(t, claims(sub, jwt.MapClaims{"exp": float64(time.Now().Add(200*time.Millisecond).UnixMilli()) / 1000}))
	}
	connect := func() *websocket.Conn {
		c, err := dialErr(t, ts.url+"/ws/refresh?token="+soon("ann"), nil)
		if err != nil {
			t.Fatal(err)
		}
		readText(t, c)
		var ask refreshMsg
		if err := json.Unmarshal([]byte(readText(t, c)), &ask); err != nil || ask.Type != "auth.refresh" || ask.Deadline == "" {
			t.Fatalf("want an auth.refresh request, got %+v %v", ask, err)
		}
		return c
	}
	send := func(c *websocket.Conn, v any) {
		b, _ := json.Marshal(v)
		write(t, c, websocket.MessageText, string(b))
	}

	t.Run("refreshed in time", func(t *testing.T) {
		c := connect()
		send(c, refreshMsg{Type: "auth.refresh", Token: signHS(t, claims("ann", nil))})
		var ack refreshMsg
		if err := json.Unmarshal([]byte(readText(t, c)), &ack); err != nil || ack.Type != "auth.refreshed" || ack.Expires == "" {
			t.Fatalf("want auth.refreshed, got %+v %v", ack, err)
		}
		write(t, c, websocket.MessageText, "still here")
		if got := readText(t, c); got != "still here" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("another user's token", func(t *testing.T) {
		c := connect()
		send(c, refreshMsg{Type: "auth.refresh", Token: signHS(t, claims("eve", nil))})
		wantClose(t, c, websocket.StatusPolicyViolation, "invalid credentials")
	})
	t.Run("invalid token", func(t *testing.T) {
		c := connect()
		send(c, refreshMsg{Type: "auth.refresh", Token: "garbage"})
		wantClose(t, c, websocket.StatusPolicyViolation, "invalid credentials")
	})
	t.Run("no refresh within the grace period", func(t *testing.T) {
		c := connect()
		wantClose(t, c, websocket.StatusPolicyViolation, "credentials expired")
	})
}

func TestSubprotocolsWithBearerToken(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws", func() wsactor.Handler { return whoami{} },
			wsactor.WithSubprotocols("chat.v2", "chat.v1"), wsactor.WithAuthenticator(&auth.JWT{Key: hsSecret}), wsactor.RequireAuth())
	})
	tok := signHS(t, claims("ann", nil))
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"chat.v1", "bearer", tok}, "user=ann proto=chat.v1 room="},
		{[]string{"chat.v1", "chat.v2", "bearer", tok}, "user=ann proto=chat.v2 room="},
		{[]string{"bearer", tok}, "user=ann proto=bearer room="},
	} {
		c, err := dialErr(t, ts.url+"/ws", &websocket.DialOptions{Subprotocols: tc.offer})
		if err != nil {
			t.Fatalf("%v: %v", tc.offer, err)
		}
		if got := readText(t, c); got != tc.want {
			t.Fatalf("%v: got %q, want %q", tc.offer, got, tc.want)
		}
	}
	_, err := dialErr(t, ts.url+"/ws", &websocket.DialOptions{Subprotocols: []string{"chat.v1"}})
	wantStatus(t, err, http.StatusUnauthorized)
}

func TestAnonymousConnectionCannotAuthenticateByRefresh(t *testing.T) {
	ts := authServer(t, nil, nil)
	c := dial(t, ts.url+"/ws/public-refresh")
	if got := readText(t, c); got != "user=anonymous proto= room=" {
		t.Fatalf("got %q", got)
	}
	msg := `{"type":"auth.refresh","token":"` + signHS(t, claims("ann", nil)) + `"}`
	write(t, c, websocket.MessageText, msg)
	// Not intercepted: the handler sees it (and echoes it); no auth.refreshed.
	if got := readText(t, c); got != msg {
		t.Fatalf("got %q", got)
	}
}

func TestCloseCodeRejectionsForBrowsers(t *testing.T) {
	ts := newTestServer(t, wsactor.Options{}, func(s *wsactor.Server) {
		s.Handle("/ws/{room}", func() wsactor.Handler { return &gate{} }, wsactor.WithCloseCodeRejections(),
			wsactor.WithAuthenticator(&auth.JWT{Key: hsSecret}), wsactor.WithPermissions(auth.RequireClaim("rooms", auth.PathValue("room"))))
	})
	valid := signHS(t, claims("ann", jwt.MapClaims{"rooms": []string{"open", "private", "full", "down"}}))
	for _, tc := range []struct {
		path   string
		code   websocket.StatusCode
		reason string
		status int // when the refusal stays an HTTP status
	}{
		{path: "/ws/open?token=garbage", code: 4401, reason: "invalid credentials"},
		{path: "/ws/banned?token=" + valid, code: 4403, reason: "forbidden"},
		{path: "/ws/private?token=" + valid, code: 4401, reason: "log in first"},
		{path: "/ws/full?token=" + valid, code: 4429, reason: "room full"},
		{path: "/ws/down?token=" + valid, status: http.StatusServiceUnavailable},
	} {
		c, err := dialErr(t, ts.url+tc.path, nil)
		if tc.status != 0 {
			wantStatus(t, err, tc.status)
			continue
		}
		if err != nil {
			t.Fatalf("%s: want an upgrade then a close, got %v", tc.path, err)
		}
		wantClose(t, c, tc.code, tc.reason)
	}
	_, err := dialErr(t, ts.url+"/ws/open?token="+valid, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://evil.example"}}})
	wantStatus(t, err, http.StatusForbidden)
	waitFor(t, "every refused connection to be released", func() bool { return ts.Stats().ConnectionsOpen == 0 && ts.Stats().ConnectionsRejected == 6 })
}
