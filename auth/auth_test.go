package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("unit-test-secret-of-enough-length")

func token(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTTokenPlacesAndPrecedence(t *testing.T) {
	ann := token(t, jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix(), "name": "Ann"})
	bob := token(t, jwt.MapClaims{"sub": "bob"})
	j := &JWT{Key: secret}
	for _, tc := range []struct {
		name string
		req  func(r *http.Request)
		want string // user ID, "" for anonymous, "!" for an error
	}{
		{"none", func(*http.Request) {}, ""},
		{"header", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+ann) }, "ann"},
		{"header scheme is case-insensitive", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+ann) }, "ann"},
		{"basic auth is not a bearer token", func(r *http.Request) { r.Header.Set("Authorization", "Basic Zm9vOmJhcg==") }, ""},
		{"subprotocol", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "chat.v1, bearer, "+ann) }, "ann"},
		{"subprotocol marker without a token", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "bearer") }, ""},
		{"cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "token", Value: ann}) }, "ann"},
		{"query", func(r *http.Request) { r.URL.RawQuery = "token=" + ann }, "ann"},
		{"header beats query", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+bob); r.URL.RawQuery = "token=" + ann }, "bob"},
		{"subprotocol beats cookie", func(r *http.Request) {
			r.Header.Set("Sec-WebSocket-Protocol", "bearer, "+bob)
			r.AddCookie(&http.Cookie{Name: "token", Value: ann})
		}, "bob"},
		{"a bad token in the first place is not skipped", func(r *http.Request) { r.Header.Set("Authorization", "Bearer junk"); r.URL.RawQuery = "token=" + ann }, "!"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws", nil)
			tc.req(r)
			u, err := j.Authenticate(r)
			switch {
			case tc.want == "!":
				if !errors.Is(err, ErrInvalidCredentials) {
					t.Fatalf("want ErrInvalidCredentials, got %v %v", u, err)
				}
			case err != nil:
				t.Fatal(err)
			case tc.want == "" && u != nil, tc.want != "" && (u == nil || u.ID != tc.want):
				t.Fatalf("got %+v, want %q", u, tc.want)
			}
		})
	}
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Authorization", "Bearer "+ann)
	u, err := j.Authenticate(r)
	if err != nil || u.Claims["name"] != "Ann" || u.Expires.IsZero() {
		t.Fatalf("claims and expiry should be carried: %+v %v", u, err)
	}
}

func TestJWTConfiguredPlacesAndKeys(t *testing.T) {
	ann := token(t, jwt.MapClaims{"sub": "ann"})
	j := &JWT{Key: secret, Query: "-", Cookie: "session", DisableSubprotocol: true}
	r := httptest.NewRequest("GET", "/ws?token="+ann, nil)
	r.Header.Set("Sec-WebSocket-Protocol", "bearer, "+ann)
	if u, err := j.Authenticate(r); u != nil || err != nil {
		t.Fatalf("disabled places must be ignored: %v %v", u, err)
	}
	r.AddCookie(&http.Cookie{Name: "session", Value: ann})
	if u, err := j.Authenticate(r); err != nil || u.ID != "ann" {
		t.Fatalf("named cookie: %v %v", u, err)
	}
	if j.Subprotocols() != nil {
		t.Fatal("no subprotocol when disabled")
	}
	bad := &JWT{Key: "not a key"}
	r = httptest.NewRequest("GET", "/ws?token="+ann, nil)
	if _, err := bad.Authenticate(r); err == nil || errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a misconfigured key is a server error, not bad credentials: %v", err)
	}
}

func TestAPIKeysAndChain(t *testing.T) {
	keys := &APIKeys{Keys: map[string]*User{"k1": {ID: "svc"}}, Query: "api_key"}
	for _, tc := range []struct {
		raw, header, want string
	}{
		{"", "", ""}, {"", "k1", "svc"}, {"api_key=k1", "", "svc"}, {"", "k2", "!"}, {"api_key=nope", "", "!"},
	} {
		r := httptest.NewRequest("GET", "/ws?"+tc.raw, nil)
		if tc.header != "" {
			r.Header.Set(DefaultAPIKeyHeader, tc.header)
		}
		u, err := keys.Authenticate(r)
		switch {
		case tc.want == "!":
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("%+v: want ErrInvalidCredentials, got %v", tc, err)
			}
		case tc.want == "":
			if u != nil || err != nil {
				t.Errorf("%+v: want anonymous, got %v %v", tc, u, err)
			}
		case err != nil || u.ID != tc.want:
			t.Errorf("%+v: got %v %v", tc, u, err)
		}
	}
	ch := Chain(keys, &JWT{Key: secret})
	r := httptest.NewRequest("GET", "/ws?token="+token(t, jwt.MapClaims{"sub": "ann"}), nil)
	if u, err := ch.Authenticate(r); err != nil || u.ID != "ann" {
		t.Fatalf("chain falls through: %v %v", u, err)
	}
	r.Header.Set(DefaultAPIKeyHeader, "wrong")
	if _, err := ch.Authenticate(r); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("a wrong key must not fall through to the next authenticator: %v", err)
	}
	if sp := ch.(interface{ Subprotocols() []string }).Subprotocols(); len(sp) != 1 || sp[0] != BearerSubprotocol {
		t.Fatalf("chain subprotocols: %v", sp)
	}
}

type fakeRequest map[string]string

func (f fakeRequest) PathValue(n string) string { return f[n] }
func (fakeRequest) Query() url.Values           { return nil }
func (fakeRequest) Header() http.Header         { return nil }

func TestPermissions(t *testing.T) {
	room := fakeRequest{"room": "dev"}
	for _, tc := range []struct {
		name  string
		user  *User
		perms []Permission
		allow bool
	}{
		{"no permissions", nil, nil, true},
		{"RequireUser anonymous", nil, []Permission{RequireUser()}, false},
		{"RequireUser", &User{ID: "a"}, []Permission{RequireUser()}, true},
		{"claim list from JSON", &User{ID: "a", Claims: map[string]any{"rooms": []any{"lobby", "dev"}}}, []Permission{RequireClaim("rooms", PathValue("room"))}, true},
		{"claim list of strings", &User{ID: "a", Claims: map[string]any{"rooms": []string{"dev"}}}, []Permission{RequireClaim("rooms", PathValue("room"))}, true},
		{"claim list without the room", &User{ID: "a", Claims: map[string]any{"rooms": []any{"lobby"}}}, []Permission{RequireClaim("rooms", PathValue("room"))}, false},
		{"claim string", &User{ID: "a", Claims: map[string]any{"role": "admin"}}, []Permission{RequireClaim("role", Literal("admin"))}, true},
		{"claim of another type", &User{ID: "a", Claims: map[string]any{"role": 1}}, []Permission{RequireClaim("role", Literal("admin"))}, false},
		{"anonymous and a claim", nil, []Permission{RequireClaim("role", Literal("admin"))}, false},
		{"empty wanted value denies", &User{ID: "a", Claims: map[string]any{"rooms": []any{""}}}, []Permission{RequireClaim("rooms", PathValue("nope"))}, false},
		{"custom error is wrapped", &User{}, []Permission{func(*User, Request) error { return errors.New("quota") }}, false},
	} {
		err := Check(tc.user, room, tc.perms...)
		if tc.allow != (err == nil) || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
}
