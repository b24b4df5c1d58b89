package gameserver

import (
	"encoding/json"
	"io/fs"
	"net/http"

	"github.com/wsactor/wsactor/auth"
)

func requireBearer(token string, next http.Handler) http.Handler {
	return auth.RequireBearer(token, "game admin", next)
}

// file serves one embedded file.
func file(fsys fs.FS, name, contentType string) http.Handler {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
