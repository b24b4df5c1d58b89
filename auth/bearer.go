package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// RequireBearer guards an HTTP API (an admin API, for operators or
// backends) with one static token: a request without "Authorization: Bearer
// <token>" gets 401 with a JSON error body, and never reaches next. The
// comparison takes the same time whatever the token sent. realm names the
// API in the WWW-Authenticate header.
func RequireBearer(token, realm string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		// Hashing first makes the comparison's time independent of both lengths.
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "missing or wrong token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
