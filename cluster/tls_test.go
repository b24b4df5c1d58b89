package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/cluster"
	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/internal/remotestart"
)

// TestLaneOverRemoteTLS: with mutual TLS between nodes (remote.tls), the
// lane, on by default, runs over TLS too: sends by ID and a close by ID
// reach a connection on the other node on it.
func TestLaneOverRemoteTLS(t *testing.T) {
	r := redistest.Start(t)
	ca, cert, key := cluster.WritePKI(t, t.TempDir())
	cfg := testConfig(r.Addr(), randomName("tls-"))
	cfg.Remote.TLS = cluster.RemoteTLS{Enabled: true, CertFile: cert, KeyFile: key, CAFile: ca,
		ServerName: "node.wsactor", RequireClientCert: true}
	nodes, err := startNodes([]cluster.Config{cfg, cfg})
	t.Cleanup(func() {
		for _, n := range nodes {
			if n != nil {
				// Later in-process starts must not probe it (remotestart).
				remotestart.Forget(n.Address())
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				_ = n.Stop(ctx)
				cancel()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	dumpLogsOnFailure(t, nodes...)
	if err := waitPeers(nodes); err != nil {
		t.Fatal(err)
	}
	s := startServers(t, nodes, wsactor.Options{})
	c := s[1].connect(t, "")
	before := nodes[1].Stats().Lane.FramesIn
	waitUntil(t, 10*time.Second, "a frame on the lane over TLS", func() bool {
		if err := s[0].Post(c.id, wsactor.Text("over tls")); err != nil {
			t.Fatal(err)
		}
		c.expect("over tls")
		return nodes[1].Stats().Lane.FramesIn > before
	})
	if l := nodes[0].Stats().Lane; l.Links == 0 || l.FramesLost != 0 {
		t.Fatalf("sender's lane %+v: want a link and nothing lost", l)
	}
	closed := c.closed()
	if err := s[0].Close(testCtx(t), c.id, 4005, "bye"); err != nil {
		t.Fatal(err)
	}
	wantCloseCode(t, closed, 4005, "bye")
}
