package transport_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

// CheckOrigin must refuse exactly the origins that Accept refuses: the server
// calls it first, so any difference either lets a cross-origin request reach
// the application's handshake code or refuses a connection Accept would take.
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
