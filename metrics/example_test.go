package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/metrics"
)

// A server's metrics in an application's own registry, served at /metrics
// next to the WebSocket route. (On a cluster node, add
// metrics.WithNode(node).)
func ExampleNewCollector() {
	srv := wsactor.New(wsactor.Options{Logger: discardLogger()})
	srv.HandleFunc("/ws", func(c *wsactor.Conn, m wsactor.Message) error { return c.Send(m) })

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(srv))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/ws", srv)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	defer srv.Shutdown(context.Background())

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", nil)
	if err != nil {
		panic(err)
	}
	_ = c.Write(ctx, websocket.MessageText, []byte("hello"))
	_, _, _ = c.Read(ctx)

	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "wsactor_connections_") || strings.HasPrefix(line, "wsactor_messages_received_total") {
			fmt.Println(line)
		}
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	// Output:
	// wsactor_connections_accepted_total{server="ws"} 1
	// wsactor_connections_held{server="ws"} 1
	// wsactor_connections_open{server="ws"} 1
	// wsactor_connections_rejected_total{reason="auth",server="ws"} 0
	// wsactor_connections_rejected_total{reason="connect",server="ws"} 0
	// wsactor_connections_rejected_total{reason="error",server="ws"} 0
	// wsactor_connections_rejected_total{reason="handshake",server="ws"} 0
	// wsactor_connections_rejected_total{reason="limit",server="ws"} 0
	// wsactor_connections_rejected_total{reason="origin",server="ws"} 0
	// wsactor_connections_rejected_total{reason="path",server="ws"} 0
	// wsactor_connections_rejected_total{reason="unavailable",server="ws"} 0
	// wsactor_messages_received_total{server="ws"} 1
}
