package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wsactor/wsactor/auth"
)

func TestRequireBearer(t *testing.T) {
	h := auth.RequireBearer("s3cret", "admin", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer s3cret", http.StatusNoContent},
		{"bearer s3cret", http.StatusNoContent},
		{"Bearer  s3cret ", http.StatusNoContent},
		{"", http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{"Bearer s3cre", http.StatusUnauthorized},
		{"Bearer s3cret2", http.StatusUnauthorized},
		{"Basic s3cret", http.StatusUnauthorized},
	} {
		r := httptest.NewRequest(http.MethodPost, "/api/x", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%q: %d, want %d", tc.header, w.Code, tc.want)
		}
		if w.Code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") != `Bearer realm="admin"` {
			t.Errorf("%q: WWW-Authenticate %q", tc.header, w.Header().Get("WWW-Authenticate"))
		}
	}
}
