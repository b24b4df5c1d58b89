package transport_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// Over plain HTTP, CheckOrigin must refuse exactly the origins that Accept
// (coder/websocket) refuses: the server calls it first, so any difference
// either lets a cross-origin request reach the application's handshake code
// or refuses a connection Accept would take. Over TLS it is stricter by
// design (TestCheckOriginScheme).
func TestCheckOriginAgreesWithAccept(t *testing.T) {
	origins := []string{
		"", "SAME", "http://evil.example", "https://evil.example", "http://EVIL.Example",
		"http://a.good.example", "http://good.example", "null", "http://evil.example:8080", "::not a url",
	}
	configs := []transport.Options{
		{},
		{OriginPatterns: []string{"evil.example"}},
		{OriginPatterns: []string{"*.good.example"}},
		{OriginPatterns: []string{"https://evil.example"}},
		{OriginPatterns: []string{"*"}},
		{OriginPatterns: []string{"evil.example:*"}},
		{OriginPatterns: []string{"[", "good.example"}}, // a malformed pattern
		{InsecureSkipOriginCheck: true},
	}
	var accepts, refusals int
	for _, cfg := range configs {
		name := strings.Join(cfg.OriginPatterns, ",")
		if cfg.InsecureSkipOriginCheck {
			name = "skip"
		} else if name == "" {
			name = "none"
		}
		t.Run(name, func(t *testing.T) {
			ts := newServer(t, serverConfig{opts: cfg})
			host := strings.TrimPrefix(ts.srv.URL, "http://")
			for _, origin := range origins {
				if origin == "SAME" {
					origin = ts.srv.URL
				}
				req, err := http.NewRequest(http.MethodGet, ts.srv.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = host
				if origin != "" {
					req.Header.Set("Origin", origin)
				}
				checkErr := transport.CheckOrigin(req, &ts.opts)

				h := http.Header{}
				if origin != "" {
					h.Set("Origin", origin)
				}
				_, dialErr := ts.dialErr(t, &websocket.DialOptions{HTTPHeader: h})
				accepted := dialErr == nil
				if accepted {
					accepts++
					recv(t, ts.conns, "the accepted connection")
				} else {
					refusals++
					var de *dialError
					if !errors.As(dialErr, &de) || de.status != http.StatusForbidden {
						t.Fatalf("origin %q: dial = %v, want success or 403", origin, dialErr)
					}
					recv(t, ts.acceptErrs, "Accept's error")
				}
				if (checkErr == nil) != accepted {
					t.Errorf("origin %q: CheckOrigin = %v but Accept accepted = %v", origin, checkErr, accepted)
				}
			}
		})
	}
	if accepts == 0 || refusals == 0 {
		t.Errorf("%d accepted and %d refused: the table should exercise both", accepts, refusals)
	}
}

// The origin's scheme counts where the request is known to have come over
// TLS: a page served over plain HTTP (which anyone on the path can rewrite)
// may not open a WebSocket to the TLS site with the user's cookies. A
// plain-HTTP request accepts either scheme, since a TLS-terminating proxy may
// not say that the client used TLS.
func TestCheckOriginScheme(t *testing.T) {
	const host = "example.com"
	tlsReq := func(r *http.Request) { r.TLS = &tls.ConnectionState{} }
	header := func(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }
	for _, tc := range []struct {
		name     string
		via      func(*http.Request) // how the request arrived; nil: plain HTTP
		patterns []string
		origin   string
		ok       bool
	}{
		{"plain request, http origin", nil, nil, "http://example.com", true},
		{"plain request, https origin (a proxy that terminates TLS silently)", nil, nil, "https://example.com", true},
		{"TLS request, https origin", tlsReq, nil, "https://example.com", true},
		{"TLS request, http origin", tlsReq, nil, "http://example.com", false},
		{"TLS request, http origin, other case", tlsReq, nil, "HTTP://EXAMPLE.com", false},
		{"TLS request, https origin, upper case", tlsReq, nil, "HTTPS://Example.COM", true},
		{"proxy says https, http origin", header("X-Forwarded-Proto", "https"), nil, "http://example.com", false},
		{"proxy says https, https origin", header("X-Forwarded-Proto", "https"), nil, "https://example.com", true},
		{"proxy says HTTPS, http origin", header("X-Forwarded-Proto", "HTTPS"), nil, "http://example.com", false},
		{"proxies say https then http, http origin", header("X-Forwarded-Proto", "https, http"), nil, "http://example.com", false},
		{"proxy says http, http origin", header("X-Forwarded-Proto", "http"), nil, "http://example.com", true},
		{"Forwarded proto=https, http origin", header("Forwarded", `for=192.0.2.1;proto=https;host=example.com`), nil, "http://example.com", false},
		{"Forwarded proto=https, https origin", header("Forwarded", `for=192.0.2.1;Proto="https"`), nil, "https://example.com", true},
		{"Forwarded proto=http, http origin", header("Forwarded", `for=192.0.2.1;proto=http`), nil, "http://example.com", true},
		{"TLS request, other host", tlsReq, nil, "https://evil.example", false},

		// A pattern without a scheme matches the host, under the same rule.
		{"host pattern, plain request, http origin", nil, []string{"*.partner.example"}, "http://app.partner.example", true},
		{"host pattern, TLS request, https origin", tlsReq, []string{"*.partner.example"}, "https://app.partner.example", true},
		{"host pattern, TLS request, http origin", tlsReq, []string{"*.partner.example"}, "http://app.partner.example", false},
		{"host pattern, proxy says https, http origin", header("X-Forwarded-Proto", "https"), []string{"*.partner.example"}, "http://app.partner.example", false},
		// A pattern with a scheme says exactly which scheme it allows.
		{"https pattern, plain request, http origin", nil, []string{"https://*.partner.example"}, "http://app.partner.example", false},
		{"https pattern, plain request, https origin", nil, []string{"https://*.partner.example"}, "https://app.partner.example", true},
		{"http pattern, TLS request, http origin (explicitly allowed)", tlsReq, []string{"http://legacy.example"}, "http://legacy.example", true},
		{"http pattern, TLS request, https origin", tlsReq, []string{"http://legacy.example"}, "https://legacy.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodGet, "http://"+host+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Host = host
			r.Header.Set("Origin", tc.origin)
			if tc.via != nil {
				tc.via(r)
			}
			err = transport.CheckOrigin(r, &transport.Options{OriginPatterns: tc.patterns})
			if (err == nil) != tc.ok {
				t.Errorf("CheckOrigin(Origin %s, patterns %q) = %v, want allowed %v", tc.origin, tc.patterns, err, tc.ok)
			}
			if err := transport.CheckOrigin(r, &transport.Options{OriginPatterns: tc.patterns, InsecureSkipOriginCheck: true}); err != nil {
				t.Errorf("InsecureSkipOriginCheck: %v", err)
			}
		})
	}
}
