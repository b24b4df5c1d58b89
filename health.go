package wsactor

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Health and readiness, for load balancers and orchestrators (Kubernetes'
// liveness and readiness probes). Liveness says the process serves HTTP at
// all: restart it if not. Readiness says it should receive new clients: a
// server shutting down or suspended, or a cluster node that has left, lost
// Redis or been dropped by its peers, is alive but not ready, and a load
// balancer sends new connections elsewhere until it is again.

// DefaultReadyTimeout bounds all the checks of one readiness probe.
const DefaultReadyTimeout = 2 * time.Second

// ReadyCheck is one condition of readiness, such as the cluster node's
// (cluster.Node.ReadyChecks). Check returns nil when the condition holds;
// it must return by ctx's deadline.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// CheckResult is one check in a health or readiness answer.
type CheckResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// HealthReport is the JSON body of HealthHandler and ReadyHandler.
type HealthReport struct {
	// Status is "ok" (live), "ready" or "not ready".
	Status string        `json:"status"`
	Checks []CheckResult `json:"checks,omitempty"`
}

// HealthHandler answers liveness probes (/healthz): 200 with
// {"status":"ok"} as long as the process serves HTTP. It checks nothing
// else on purpose: a process that is merely not ready (shutting down, Redis
// unreachable) must not be restarted for it.
func HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, HealthReport{Status: "ok"})
	})
}

// ReadyHandler answers readiness probes (/readyz): 200 with
// {"status":"ready", "checks": [...]} when the server accepts connections
// (Ready: not suspended, not shutting down) and every check passes, and
// 503 with {"status":"not ready"} otherwise, each check saying whether it
// passed and, if not, why. The checks run concurrently within
// DefaultReadyTimeout (or the request's own deadline, if sooner).
func (s *Server) ReadyHandler(checks ...ReadyCheck) http.Handler {
	all := append([]ReadyCheck{{Name: "server", Check: s.readyCheck}}, checks...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), DefaultReadyTimeout)
		defer cancel()
		rep := HealthReport{Status: "ready", Checks: runChecks(ctx, all)}
		status := http.StatusOK
		for _, c := range rep.Checks {
			if !c.OK {
				rep.Status, status = "not ready", http.StatusServiceUnavailable
			}
		}
		writeHealth(w, status, rep)
	})
}

// errNotReady says why the server itself is not ready.
type errNotReady string

func (e errNotReady) Error() string { return string(e) }

func (s *Server) readyCheck(context.Context) error {
	if s.shuttingDown.Load() {
		return errNotReady("shutting down")
	}
	if sus := s.suspended.Load(); sus != nil {
		return errNotReady("suspended: " + sus.reason)
	}
	return nil
}

func runChecks(ctx context.Context, checks []ReadyCheck) []CheckResult {
	out := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			done := make(chan error, 1)
			go func() { done <- c.Check(ctx) }()
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				err = ctx.Err() // a check that ignores ctx does not hold the probe
			}
			out[i] = CheckResult{Name: c.Name, OK: err == nil}
			if err != nil {
				out[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return out
}

func writeHealth(w http.ResponseWriter, status int, rep HealthReport) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(rep)
}
