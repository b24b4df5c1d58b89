// Package web serves wsactor's browser client, wsactor.js: a plain ES module
// (no dependencies, no build step) that connects to a wsactor server, sends
// typed messages ({"type": ..., ...payload}), matches requests to replies,
// dispatches messages by type, reconnects with exponential backoff and full
// jitter, calling the page back after every reconnection so that it can
// re-join, and, given a token function, fetches a fresh token for every
// attempt and answers the server's requests for new credentials (wsactor's
// WithCredentialRefresh). The module documents itself at the top of
// wsactor.js.
//
// Serve it from the process that serves the WebSocket routes, so that pages
// import it from their own origin:
//
//	mux.Handle("GET /wsactor.js", web.Handler())
//
// and in the page:
//
//	<script type="module">
//	  import { connect } from "/wsactor.js";
//	</script>
//
// Handler serves the files of FS by their path; mounted under a prefix, strip
// it (http.StripPrefix("/static", web.Handler()) serves /static/wsactor.js).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// Name is the module's file name in FS, and the path Handler serves it at.
const Name = "wsactor.js"

// FS holds the browser client: the single file wsactor.js.
//
//go:embed wsactor.js
var FS embed.FS

// Script returns the module's source.
func Script() []byte {
	b, err := fs.ReadFile(FS, Name)
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	return b
}

// Handler serves wsactor.js at /wsactor.js (GET and HEAD) as
// "text/javascript; charset=utf-8", with an ETag so that browsers revalidate
// cheaply instead of caching a stale client after an upgrade. Any other path
// gets 404.
func Handler() http.Handler {
	src := Script()
	sum := sha256.Sum256(src)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimPrefix(r.URL.Path, "/") != Name {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache") // revalidate every time; the ETag makes that a 304
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("ETag", etag)
		http.ServeContent(w, r, Name, time.Time{}, bytes.NewReader(src))
	})
}
