package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// ErrForbidden is the error a Permission wraps when it denies; the server
// answers it with 403 before the upgrade, or closes with 1008 afterwards.
var ErrForbidden = errors.New("auth: forbidden")

// Request is what a permission check sees: the handshake before the upgrade,
// or the live connection when checking again later.
type Request interface {
	PathValue(name string) string
	Query() url.Values
	Header() http.Header
}

// Permission allows or denies a user (nil when anonymous) a request. It
// returns nil to allow, or an error wrapping ErrForbidden to deny.
type Permission func(u *User, r Request) error

// Check runs permissions in order and returns the first denial.
func Check(u *User, r Request, permissions ...Permission) error {
	for _, p := range permissions {
		if err := p(u, r); err != nil {
			if !errors.Is(err, ErrForbidden) {
				err = fmt.Errorf("%w: %w", ErrForbidden, err)
			}
			return err
		}
	}
	return nil
}

// RequireUser denies anonymous requests.
func RequireUser() Permission {
	return func(u *User, _ Request) error {
		if u == nil {
			return fmt.Errorf("%w: authentication required", ErrForbidden)
		}
		return nil
	}
}

// RequireClaim allows a user whose claim equals the wanted value or, for a
// list claim, contains it: RequireClaim("rooms", PathValue("room")) lets a
// token with "rooms": ["lobby", "dev"] into /ws/{room} for those two rooms
// only. An empty wanted value denies.
func RequireClaim(claim string, want func(Request) string) Permission {
	return func(u *User, r Request) error {
		w := want(r)
		if u != nil && w != "" && claimHas(u.Claims[claim], w) {
			return nil
		}
		return fmt.Errorf("%w: claim %q does not grant %q", ErrForbidden, claim, w)
	}
}

func claimHas(v any, want string) bool {
	switch v := v.(type) {
	case string:
		return v == want
	case []string:
		for _, s := range v {
			if s == want {
				return true
			}
		}
	case []any:
		for _, s := range v {
			if s == want {
				return true
			}
		}
	}
	return false
}

// PathValue returns the request's path variable name, for RequireClaim.
func PathValue(name string) func(Request) string {
	return func(r Request) string { return r.PathValue(name) }
}

// Literal returns a fixed value, for RequireClaim("role", Literal("admin")).
func Literal(v string) func(Request) string {
	return func(Request) string { return v }
}
