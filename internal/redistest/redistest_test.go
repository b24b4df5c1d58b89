package redistest

import (
	"net"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	up := func() bool {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			return false
		}
		defer c.Close()
		return ping(c)
	}
	if !up() {
		t.Fatal("not answering after Start")
	}
	s.Stop()
	if up() {
		t.Fatal("still answering after Stop")
	}
	s.Restart()
	if !up() {
		t.Fatal("not answering after Restart")
	}
}
