package benchmarks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/metrics"
)

// The cost of exporting metrics: BenchmarkMetricsOverhead.
const (
	// envEchoLoad makes a re-executed test binary the client process of
	// BenchmarkMetricsOverhead (TestHelperEchoLoad).
	envEchoLoad = "WSACTOR_BENCH_ECHO_LOAD"
	// envEchoRounds is how many round trips it makes in all.
	envEchoRounds = "WSACTOR_BENCH_ECHO_ROUNDS"
	// envScrapeURL, if set, is the /metrics URL it fetches every second
	// while it makes them, as Prometheus would.
	envScrapeURL = "WSACTOR_BENCH_SCRAPE_URL"
)

// plainEcho echoes every message.
type plainEcho struct{}

func (plainEcho) OnMessage(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) }

// BenchmarkMetricsOverhead runs echo load (50 connections, 256-byte round
// trips) from a client process against a wsactor server without metrics
// (metrics=off) and with the Prometheus collector registered and /metrics
// scraped every second during the load (metrics=on). The clients and the
// scraper run in the other process, so server-cpu-ns/msg is the server
// process's own CPU time (user + system) per round trip, /metrics included;
// the ratio of the two is the overhead. Sub-benchmarks alternate within one
// run: use -count to interleave them. Use a fixed -benchtime (200000x) long
// enough to span several scrapes.
func BenchmarkMetricsOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics=off"
		if on {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			s := wsactor.New(wsactor.Options{
				Logger:    slog.New(slog.DiscardHandler),
				Transport: wsactor.TransportOptions{MaxMessageSize: readLimit, RateLimit: unboundLimit},
			})
			s.Handle("/", func() wsactor.Handler { return plainEcho{} })
			mux := http.NewServeMux()
			mux.Handle("/", s)
			if on {
				reg := prometheus.NewRegistry()
				reg.MustRegister(metrics.NewCollector(s))
				mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			}
			hs := httptest.NewServer(mux)
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				defer cancel()
				_ = s.Shutdown(ctx)
				hs.Close()
			})
			env := []string{envEchoLoad + "=1", envHelperURL + "=" + wsURL(hs), envHelperConns + "=" + strconv.Itoa(parallelConns),
				envEchoRounds + "=" + strconv.Itoa(b.N)}
			if on {
				env = append(env, envScrapeURL+"="+hs.URL+"/metrics")
			}
			proc, r, err := startHelperProcess("TestHelperEchoLoad", "wsactor-echo-load-*.log", env...)
			if err != nil {
				b.Fatal(err)
			}
			_ = proc.stdout.SetReadDeadline(time.Now().Add(waitLimit))
			before := readCounters()
			start := time.Now()
			b.ResetTimer()
			if _, err := io.WriteString(proc.stdin, "go\n"); err != nil {
				b.Fatal(err)
			}
			line, err := r.ReadString('\n')
			b.StopTimer()
			elapsed, after := time.Since(start), readCounters()
			if stopErr := proc.stop(); err != nil || stopErr != nil {
				b.Fatalf("client process: %q, %v, %v", line, err, stopErr)
			}
			var scrapes int
			if _, err := fmt.Sscanf(line, "done %d", &scrapes); err != nil {
				b.Fatalf("client process said %q", line)
			}
			if on && elapsed > 2*time.Second && scrapes == 0 {
				b.Fatal("no scrape during the load")
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(after.cpu-before.cpu)/float64(b.N), "server-cpu-ns/msg")
			b.ReportMetric(float64(after.mallocs-before.mallocs)/float64(b.N), "server-allocs/msg")
			b.ReportMetric(float64(scrapes), "scrapes")
		})
	}
}

// TestHelperEchoLoad is the client process of BenchmarkMetricsOverhead: it
// opens the connections, says "ready", waits for "go" on stdin, makes the
// round trips (scraping /metrics every second meanwhile, if asked), says
// "done <scrapes>", and exits when stdin closes.
func TestHelperEchoLoad(t *testing.T) {
	if os.Getenv(envEchoLoad) != "1" {
		t.Skip("client process of BenchmarkMetricsOverhead; runs only when re-executed by it")
	}
	url, n := helperURLConns(t)
	rounds, err := strconv.Atoi(os.Getenv(envEchoRounds))
	if err != nil || rounds < 0 {
		t.Fatalf("bad %s", envEchoRounds)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	conns, err := dialMany(ctx, url, n, false, nil)
	if err != nil {
		t.Fatalf("open %d connections: %v", n, err)
	}
	defer closeAll(conns)
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if line, err := in.ReadString('\n'); err != nil || line != "go\n" {
		t.Fatalf("stdin: %q, %v", line, err)
	}
	var scrapes atomic.Int64
	stop := make(chan struct{})
	scraped := make(chan struct{})
	go func() {
		defer close(scraped)
		scrapeEverySecond(t, os.Getenv(envScrapeURL), stop, &scrapes)
	}()
	_, err = echoRun(conns, rounds)
	close(stop)
	<-scraped
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("done %d\n", scrapes.Load())
	_, _ = io.Copy(io.Discard, in)
}

// scrapeEverySecond fetches url every second until stop, counting the
// scrapes that parsed as wsactor's metrics.
func scrapeEverySecond(t *testing.T, url string, stop <-chan struct{}, scrapes *atomic.Int64) {
	if url == "" {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Errorf("scrape: %v", err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !strings.Contains(string(body), "wsactor_messages_received_total") {
			t.Errorf("scrape: %v, %d bytes without wsactor's metrics", err, len(body))
			return
		}
		scrapes.Add(1)
	}
}
