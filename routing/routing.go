// Package routing maps WebSocket upgrade requests to routes with net/http's
// ServeMux patterns ("/ws/{room}", "GET /ws/{user}/{rest...}"), so path
// variables reach handlers through the standard Request.PathValue.
package routing

import (
	"net/http"
	"strings"
)

// Mux is a table of WebSocket routes. Unknown paths get 404 and plain HTTP
// requests to a WebSocket route get 426 Upgrade Required.
type Mux struct {
	mux http.ServeMux
	// Refused, if set, is told of every request the mux answers itself
	// (404 or 426), for the server's counters.
	Refused func(status int)
}

// Handle registers h for pattern (ServeMux syntax). h is only called for
// WebSocket upgrade requests. Like ServeMux, it panics on an invalid or
// conflicting pattern.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !IsUpgrade(r) {
			if m.Refused != nil {
				m.Refused(http.StatusUpgradeRequired)
			}
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "websocket")
			http.Error(w, "this is a WebSocket endpoint: connect with a WebSocket client", http.StatusUpgradeRequired)
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// ServeHTTP dispatches r to the route whose pattern matches it.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.Refused != nil {
		// Handler only finds the route (it does not set path values):
		// the request is still served by ServeHTTP, which does.
		if _, pattern := m.mux.Handler(r); pattern == "" {
			m.Refused(http.StatusNotFound)
		}
	}
	m.mux.ServeHTTP(w, r)
}

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// PathNames returns the names of the wildcards in a ServeMux pattern, in
// order: "GET /ws/{room}/{rest...}" gives ["room", "rest"].
func PathNames(pattern string) []string {
	var names []string
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			return names
		}
		pattern = pattern[i+1:]
		j := strings.IndexByte(pattern, '}')
		if j < 0 {
			return names
		}
		name := strings.TrimSuffix(pattern[:j], "...")
		if name != "$" && name != "" {
			names = append(names, name)
		}
		pattern = pattern[j+1:]
	}
}
