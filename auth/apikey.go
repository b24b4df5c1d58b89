package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
)

// DefaultAPIKeyHeader is the header APIKeys reads by default.
const DefaultAPIKeyHeader = "X-API-Key"

// APIKeys authenticates static API keys, for services and bots. Keys are
// compared in constant time.
type APIKeys struct {
	// Keys maps each key to the user it proves.
	Keys map[string]*User
	// Header carrying the key (DefaultAPIKeyHeader when empty; "-" disables it).
	Header string
	// Query names a query parameter carrying the key; empty disables it
	// (query strings end up in access logs).
	Query string
}

// Authenticate implements Authenticator.
func (a *APIKeys) Authenticate(r *http.Request) (*User, error) {
	key, where := "", ""
	if h := orDefault(a.Header, DefaultAPIKeyHeader); h != "-" && r.Header.Get(h) != "" {
		key, where = r.Header.Get(h), "header "+h
	} else if a.Query != "" && r.URL.Query().Get(a.Query) != "" {
		key, where = r.URL.Query().Get(a.Query), "query parameter "+a.Query
	}
	if key == "" {
		return nil, nil
	}
	// Hash first so the comparison time does not depend on key lengths, and
	// visit every key so it does not depend on which one matched.
	sum := sha256.Sum256([]byte(key))
	var found *User
	for k, u := range a.Keys {
		ks := sha256.Sum256([]byte(k))
		if subtle.ConstantTimeCompare(sum[:], ks[:]) == 1 {
			found = u
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: unknown API key in %s", ErrInvalidCredentials, where)
	}
	return found, nil
}

// Chain tries authenticators in order. The first that finds credentials
// decides: its user, or its error (credentials that are present but wrong are
// refused, never skipped). If none finds credentials the request is anonymous.
func Chain(authenticators ...Authenticator) Authenticator {
	return chain(authenticators)
}

type chain []Authenticator

func (c chain) Authenticate(r *http.Request) (*User, error) {
	for _, a := range c {
		u, err := a.Authenticate(r)
		if err != nil || u != nil {
			return u, err
		}
	}
	return nil, nil
}

// Subprotocols gathers the subprotocols its authenticators need.
func (c chain) Subprotocols() []string {
	var all []string
	for _, a := range c {
		if s, ok := a.(interface{ Subprotocols() []string }); ok {
			all = append(all, s.Subprotocols()...)
		}
	}
	return all
}
