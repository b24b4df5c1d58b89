// Package auth authenticates WebSocket handshakes before the upgrade.
//
// An Authenticator looks at the HTTP upgrade request and returns the User it
// proves, nil for an anonymous request, or an error for credentials that are
// present but wrong. The server answers an error with 401 and never upgrades.
package auth

import (
	"errors"
	"net/http"
	"time"
)

// User is an authenticated principal. It is shared, read-only, by the
// handshake and every handler call of the connection.
type User struct {
	// ID is the stable user identifier (a JWT's "sub").
	ID string
	// Claims holds every claim or attribute the authenticator extracted.
	Claims map[string]any
	// Expires is when the credentials stop being valid; zero means never.
	Expires time.Time
}

// Authenticator proves who is connecting.
type Authenticator interface {
	// Authenticate returns the user the request proves, (nil, nil) when the
	// request carries no credentials at all, or an error when credentials are
	// present but invalid.
	Authenticate(r *http.Request) (*User, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (*User, error)

// Authenticate calls f(r).
func (f AuthenticatorFunc) Authenticate(r *http.Request) (*User, error) { return f(r) }

// ErrInvalidCredentials is the error an Authenticator wraps when it refuses
// credentials; the server answers it with 401.
var ErrInvalidCredentials = errors.New("auth: invalid credentials")
