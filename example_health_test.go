package wsactor_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/wsactor/wsactor"
)

// Liveness and readiness probes. A server that is shutting down is alive
// but not ready: the load balancer sends new clients elsewhere. On a
// cluster node, pass node.ReadyChecks() to ReadyHandler as well.
func ExampleServer_ReadyHandler() {
	srv := wsactor.New(wsactor.Options{Logger: slog.New(slog.DiscardHandler)})
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", wsactor.HealthHandler())
	mux.Handle("GET /readyz", srv.ReadyHandler())
	hs := httptest.NewServer(mux)
	defer hs.Close()

	get := func(path string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%s %d %s", path, resp.StatusCode, body)
	}
	get("/healthz")
	get("/readyz")
	_ = srv.Shutdown(context.Background())
	get("/healthz")
	get("/readyz")
	// Output:
	// /healthz 200 {"status":"ok"}
	// /readyz 200 {"status":"ready","checks":[{"name":"server","ok":true}]}
	// /healthz 200 {"status":"ok"}
	// /readyz 503 {"status":"not ready","checks":[{"name":"server","ok":false,"error":"shutting down"}]}
}
