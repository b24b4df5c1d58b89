package actors

import (
	"net/http"
	"net/url"

	"github.com/wsactor/wsactor/auth"
)

// Handshake is what Connect sees of the upgrade request, before the socket exists.
type Handshake struct {
	// Request is the upgrade request. It must not be kept after Connect returns.
	Request *http.Request
	// User is the authenticated user, or nil for an anonymous connection.
	User *auth.User

	values map[any]any
}

// PathValue returns the value of a path variable of the route's pattern.
func (h *Handshake) PathValue(name string) string { return h.Request.PathValue(name) }

// Query returns the parsed query string.
func (h *Handshake) Query() url.Values { return h.Request.URL.Query() }

// Header returns the request headers.
func (h *Handshake) Header() http.Header { return h.Request.Header }

// Cookie returns the named cookie, or http.ErrNoCookie.
func (h *Handshake) Cookie(name string) (*http.Cookie, error) { return h.Request.Cookie(name) }

// RemoteAddr returns the client's network address (the request's RemoteAddr).
func (h *Handshake) RemoteAddr() string { return h.Request.RemoteAddr }

// SetValue attaches a value to the connection, readable with Conn.Value for
// its whole life, across handler restarts (unlike fields of the Handler).
func (h *Handshake) SetValue(key, value any) {
	if h.values == nil {
		h.values = make(map[any]any)
	}
	h.values[key] = value
}

// Values returns what SetValue attached.
func (h *Handshake) Values() map[any]any { return h.values }

// Decision is Connect's answer. The zero Decision rejects with 403: not
// accepting means rejecting.
type Decision struct {
	// Accept upgrades the connection.
	Accept bool
	// Status is the HTTP status of a rejection (default 403).
	Status int
	// Reason is the short body of a rejection, or the close reason of an
	// accept-then-close.
	Reason string
	// CloseCode, with Accept, upgrades and then immediately closes with this
	// code: browsers cannot read the HTTP status of a failed upgrade, but
	// they can read a close code.
	CloseCode StatusCode
}

// Accept accepts the connection.
func Accept() Decision { return Decision{Accept: true} }

// Reject refuses the upgrade with an HTTP status and a short reason.
func Reject(status int, reason string) Decision { return Decision{Status: status, Reason: reason} }

// AcceptThenClose upgrades and immediately closes with code and reason, so
// that a browser client can see why it was refused.
func AcceptThenClose(code StatusCode, reason string) Decision {
	return Decision{Accept: true, CloseCode: code, Reason: reason}
}
