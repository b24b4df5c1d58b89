package metrics_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/metrics"
)

const testTimeout = 20 * time.Second

// fixture is a server with an echo route that panics on "panic", and its
// metrics, served on one loopback listener.
type fixture struct {
	srv  *wsactor.Server
	url  string // ws://.../ws
	base string // http://...
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := wsactor.New(wsactor.Options{Logger: discardLogger()})
	srv.HandleFunc("/ws", func(c *wsactor.Conn, m wsactor.Message) error {
		if string(m.Data) == "panic" {
			panic("asked to")
		}
		return c.Send(m)
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(srv))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	mux.Handle("/", srv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	return &fixture{srv: srv, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", base: hs.URL}
}

// scrape fetches /metrics and parses it with Prometheus's own text parser.
func (f *fixture) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(f.base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of name whose labels include want
// (counter, gauge, or a histogram's sample count); 0 if absent.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
series:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue series
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return 0
}

// waitMetric scrapes until name{labels} equals want.
func (f *fixture) waitMetric(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		got := value(f.scrape(t), name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dial(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func echo(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != s {
		t.Fatalf("read: %q, %v; want %q", got, err, s)
	}
}

func TestConnectionOpenedAndClosed(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.url, nil)
	f.waitMetric(t, 1, "wsactor_connections_open")
	echo(t, c, "hello")
	// A message is counted out once its write has returned, which may be
	// after the client has read it.
	f.waitMetric(t, 1, "wsactor_messages_sent_total")
	fams := f.scrape(t)
	for name, want := range map[string]float64{
		"wsactor_connections_accepted_total": 1,
		"wsactor_messages_received_total":    1,
		"wsactor_messages_sent_total":        1,
		"wsactor_received_bytes_total":       5,
		"wsactor_sent_bytes_total":           5,
	} {
		if got := value(fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	f.waitMetric(t, 0, "wsactor_connections_open")
	f.waitMetric(t, 1, "wsactor_closes_total", "code", "1000", "by", "client")
	if got := value(f.scrape(t), "wsactor_closes_total", "by", "server"); got != 0 {
		t.Errorf("closes by server = %v, want 0", got)
	}
}

func TestHandlerPanic(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.url, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("panic")); err != nil {
		t.Fatalf("write: %v", err)
	}
	f.waitMetric(t, 1, "wsactor_handler_panics_total")
	f.waitMetric(t, 1, "wsactor_handler_restarts_total")
	echo(t, c, "still here") // the socket survived the restart
	f.waitMetric(t, 1, "wsactor_connections_open")
}

func TestRejectedOrigin(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, f.url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin dial: %v, %v; want 403", resp, err)
	}
	f.waitMetric(t, 1, "wsactor_connections_rejected_total", "reason", "origin")
	fams := f.scrape(t)
	if got := value(fams, "wsactor_connections_accepted_total"); got != 0 {
		t.Errorf("accepted = %v, want 0", got)
	}
	if got := value(fams, "wsactor_connections_rejected_total", "reason", "auth"); got != 0 {
		t.Errorf("rejected{auth} = %v, want 0", got)
	}
}

func TestRejectedPath(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, strings.TrimSuffix(f.url, "/ws")+"/nowhere", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("dial of an unknown path: %v, %v; want 404", resp, err)
	}
	f.waitMetric(t, 1, "wsactor_connections_rejected_total", "reason", "path")
}

func TestServerCloseAndMailboxLatency(t *testing.T) {
	f := newFixture(t)
	c := dial(t, f.url, nil)
	// 64 messages: the mailbox latency is sampled on one in 64.
	for i := range 64 {
		echo(t, c, strings.Repeat("x", i+1))
	}
	f.waitMetric(t, 1, "wsactor_mailbox_latency_seconds")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	srvCloses := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		srvCloses <- err
	}()
	f.waitMetric(t, 1, "wsactor_connections_open")
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	var ce websocket.CloseError
	if err := <-srvCloses; !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("client read: %v; want close 1001", err)
	}
	f.waitMetric(t, 1, "wsactor_closes_total", "code", "1001", "by", "server")
	f.waitMetric(t, 0, "wsactor_server_ready")
}

func TestBroadcastAndDirectory(t *testing.T) {
	f := newFixture(t)
	srv := f.srv
	joined := make(chan struct{}, 2)
	srv.HandleFunc("/room", func(c *wsactor.Conn, m wsactor.Message) error {
		if string(m.Data) == "join" {
			if err := c.Join("lobby", nil); err != nil {
				return err
			}
			joined <- struct{}{}
			return nil
		}
		_, err := srv.Groups().Broadcast(context.Background(), "lobby", m)
		return err
	})
	url := strings.TrimSuffix(f.url, "/ws") + "/room"
	a, b := dial(t, url, nil), dial(t, url, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, c := range []*websocket.Conn{a, b} {
		if err := c.Write(ctx, websocket.MessageText, []byte("join")); err != nil {
			t.Fatal(err)
		}
		<-joined
	}
	if err := a.Write(ctx, websocket.MessageText, []byte("hi all")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{a, b} {
		if _, got, err := c.Read(ctx); err != nil || string(got) != "hi all" {
			t.Fatalf("read: %q, %v", got, err)
		}
	}
	fams := f.scrape(t)
	if got := value(fams, "wsactor_broadcast_duration_seconds"); got != 1 {
		t.Errorf("broadcasts timed = %v, want 1", got)
	}
	h := fams["wsactor_broadcast_recipients"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 2 {
		t.Errorf("recipients: count %d sum %v, want 1 and 2", h.GetSampleCount(), h.GetSampleSum())
	}
	if got := value(fams, "wsactor_directory_operations_total", "op", "join"); got != 2 {
		t.Errorf("directory joins = %v, want 2", got)
	}
	if got := value(fams, "wsactor_directory_errors_total", "op", "join"); got != 0 {
		t.Errorf("directory join errors = %v, want 0", got)
	}
}
