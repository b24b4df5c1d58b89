package transport

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// CheckOrigin decides whether a browser page may open this WebSocket. It
// allows a request without an Origin header (not from a browser), an origin
// on the request's own host, and one matching OriginPatterns (path.Match
// syntax; a pattern containing "://" matches the origin's scheme and host,
// any other its host).
//
// On top of coder/websocket's rule, which Accept applies and which compares
// hosts only, the scheme counts when the request is known to have arrived
// over TLS: directly (r.TLS), or through a proxy that says so
// ("X-Forwarded-Proto: https" or "Forwarded: proto=https"). Such a request
// needs an https origin unless a pattern names another scheme explicitly
// ("http://legacy.example.com"): a page served over plain HTTP can be
// rewritten by anyone on its path, and must not be able to open a WebSocket
// to the TLS site with the user's cookies. A request that arrived over plain
// HTTP accepts http and https origins alike, because a TLS-terminating proxy
// may not tell the server that the client used TLS. The headers are trusted
// without knowing the proxy because they can only make the check stricter.
//
// The server calls CheckOrigin before authentication and Connect, so that a
// cross-origin request is refused (403) before any of the application's
// handshake code runs.
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
	secure := arrivedOverTLS(r)
	schemeOK := !secure || strings.EqualFold(u.Scheme, "https")
	if strings.EqualFold(r.Host, u.Host) && schemeOK {
		return nil
	}
	for _, pattern := range opts.OriginPatterns {
		target := u.Host
		explicit := strings.Contains(pattern, "://")
		if explicit {
			target = u.Scheme + "://" + u.Host
		} else if !schemeOK {
			continue
		}
		if ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(target)); err != nil {
			return fmt.Errorf("bad origin pattern %q: %w", pattern, err)
		} else if ok {
			return nil
		}
	}
	if !schemeOK {
		return fmt.Errorf("origin %q is not https, and the request for host %q arrived over TLS", origin, r.Host)
	}
	return fmt.Errorf("origin %q is not allowed for host %q", u.Host, r.Host)
}

// arrivedOverTLS reports whether the client is known to have used TLS: the
// connection itself, or the first proxy's X-Forwarded-Proto or Forwarded
// proto (the one that faced the client).
func arrivedOverTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if v := r.Header.Get("X-Forwarded-Proto"); v != "" {
		first, _, _ := strings.Cut(v, ",")
		return strings.EqualFold(strings.TrimSpace(first), "https")
	}
	if v := r.Header.Get("Forwarded"); v != "" {
		first, _, _ := strings.Cut(v, ",")
		for pair := range strings.SplitSeq(first, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(pair), "=")
			if strings.EqualFold(k, "proto") {
				return strings.EqualFold(strings.Trim(val, `"`), "https")
			}
		}
	}
	return false
}
