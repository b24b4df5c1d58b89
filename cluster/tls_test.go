package cluster_test

import (
	"testing"
	"time"

	"github.com/wsactor/wsactor"
)

// TestLaneOverRemoteTLS: with mutual TLS between nodes (remote.tls), the
// lane, on by default, runs over TLS too: sends by ID and a close by ID
// reach a connection on the other node on it.
func TestLaneOverRemoteTLS(t *testing.T) {
	p := getPool(t)
	nodes := p.tls
	dumpLogsOnFailure(t, nodes...)
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
