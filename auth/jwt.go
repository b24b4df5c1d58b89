package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Where JWT looks for a token, in this order. The first place that has one is
// used; a bad token there is refused even if another place has a good one.
const (
	// DefaultTokenQuery is the query parameter that may carry the token.
	DefaultTokenQuery = "token"
	// DefaultTokenCookie is the cookie that may carry the token.
	DefaultTokenCookie = "token"
	// BearerSubprotocol is the subprotocol marker for a token carried in
	// Sec-WebSocket-Protocol, the one header a browser's WebSocket can set:
	// new WebSocket(url, ["bearer", token]). The server negotiates "bearer".
	BearerSubprotocol = "bearer"
)

// JWT authenticates with a signed JSON Web Token, parsed and verified by
// github.com/golang-jwt/jwt/v5. The algorithm is pinned (an "alg": "none" or
// an HMAC token presented to an RSA key is refused), and exp, nbf, iss and aud
// are checked. The token's "sub" becomes User.ID, its "exp" User.Expires, and
// every claim is in User.Claims.
type JWT struct {
	// Key verifies signatures: []byte for HS256/384/512, *rsa.PublicKey for
	// RS256/384/512 and PS*, ed25519.PublicKey for EdDSA, *ecdsa.PublicKey
	// for ES256/384/512.
	Key any
	// Algorithms accepted. Default: the one that matches Key's type (HS256,
	// RS256, EdDSA or ES256).
	Algorithms []string
	// Issuer, if set, must equal the token's "iss".
	Issuer string
	// Audience, if set, must be among the token's "aud".
	Audience string
	// Leeway tolerates clock skew on exp and nbf. Default 0.
	Leeway time.Duration
	// RequireExpiry refuses tokens without "exp".
	RequireExpiry bool
	// Query names the query parameter holding the token (DefaultTokenQuery
	// when empty; "-" disables it).
	Query string
	// Cookie names the cookie holding the token (DefaultTokenCookie when
	// empty; "-" disables it).
	Cookie string
	// DisableSubprotocol ignores tokens carried in Sec-WebSocket-Protocol.
	DisableSubprotocol bool
	// Now returns the current time; default time.Now. For tests.
	Now func() time.Time
}

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(r *http.Request) (*User, error) {
	raw, where := j.token(r)
	if raw == "" {
		return nil, nil
	}
	algs, err := j.algorithms()
	if err != nil {
		return nil, err
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithLeeway(j.Leeway)}
	if j.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(j.Issuer))
	}
	if j.Audience != "" {
		opts = append(opts, jwt.WithAudience(j.Audience))
	}
	if j.RequireExpiry {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if j.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(j.Now))
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return j.Key, nil }, opts...); err != nil {
		return nil, fmt.Errorf("%w: token from %s: %w", ErrInvalidCredentials, where, err)
	}
	sub, err := claims.GetSubject()
	if err != nil || sub == "" {
		return nil, fmt.Errorf("%w: token from %s has no subject", ErrInvalidCredentials, where)
	}
	u := &User{ID: sub, Claims: claims}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		u.Expires = exp.Time
	}
	return u, nil
}

// Subprotocols returns the subprotocol the route must be able to negotiate
// for tokens carried in Sec-WebSocket-Protocol.
func (j *JWT) Subprotocols() []string {
	if j.DisableSubprotocol {
		return nil
	}
	return []string{BearerSubprotocol}
}

func (j *JWT) algorithms() ([]string, error) {
	if len(j.Algorithms) > 0 {
		return j.Algorithms, nil
	}
	switch j.Key.(type) {
	case []byte:
		return []string{"HS256"}, nil
	case *rsa.PublicKey:
		return []string{"RS256"}, nil
	case ed25519.PublicKey:
		return []string{"EdDSA"}, nil
	case *ecdsa.PublicKey:
		return []string{"ES256"}, nil
	}
	return nil, fmt.Errorf("auth: JWT.Key of type %T is not a verification key", j.Key)
}

// token finds the token and says where it came from.
func (j *JWT) token(r *http.Request) (token, where string) {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), "Authorization header"
		}
	}
	if !j.DisableSubprotocol {
		if tok := SubprotocolToken(r); tok != "" {
			return tok, "Sec-WebSocket-Protocol"
		}
	}
	if name := orDefault(j.Cookie, DefaultTokenCookie); name != "-" {
		if c, err := r.Cookie(name); err == nil && c.Value != "" {
			return c.Value, "cookie " + name
		}
	}
	if name := orDefault(j.Query, DefaultTokenQuery); name != "-" {
		if tok := r.URL.Query().Get(name); tok != "" {
			return tok, "query parameter " + name
		}
	}
	return "", ""
}

// SubprotocolToken returns the token offered as the subprotocol that follows
// "bearer" in Sec-WebSocket-Protocol, or "".
func SubprotocolToken(r *http.Request) string {
	var offered []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			offered = append(offered, strings.TrimSpace(p))
		}
	}
	for i := 0; i+1 < len(offered); i++ {
		if offered[i] == BearerSubprotocol {
			return offered[i+1]
		}
	}
	return ""
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
