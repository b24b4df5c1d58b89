package transport

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// CheckOrigin applies the same origin rule as Accept (coder/websocket's):
// no Origin header, the request's own host, or a host matching one of
// OriginPatterns. The server calls it before authentication and Connect, so
// that a cross-origin request is refused (403) before any of the
// application's handshake code runs.
func CheckOrigin(r *http.Request, opts *Options) error {
	if opts.InsecureSkipOriginCheck {
		return nil
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("unparsable Origin header %q: %w", origin, err)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, pattern := range opts.OriginPatterns {
		target := u.Host
		if strings.Contains(pattern, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(target)); err != nil {
			return fmt.Errorf("bad origin pattern %q: %w", pattern, err)
		} else if ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not allowed for host %q", u.Host, r.Host)
}
