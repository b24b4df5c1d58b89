// Package remotestart starts protoactor remote endpoints safely when a
// process runs several of them (tests with several in-process nodes).
//
// remote.(*Remote).Start writes gRPC's process-wide logger
// (protoactor-go remote/server.go:61, grpclog.SetLoggerV2) while the gRPC
// servers of endpoints already started read it from their own goroutines: a
// data race, harmless with one endpoint per process but reported by -race
// with two. Start serializes starts and, after each, exchanges HTTP/2
// connection prefaces with every endpoint started so far. Socket reads and
// writes carry happens-before edges in the race detector's model, so each
// server's earlier reads of the logger are ordered before the next write.
// The probe connections stay open until the endpoint is forgotten: a closing
// gRPC transport logs too, and that must not overlap a later Start.
//
// It is for processes that run several endpoints, i.e. tests; a production
// node has one endpoint and calls remote.Start directly.
package remotestart

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/remote"
)

var (
	mu      sync.Mutex
	started = map[string][]net.Conn{} // endpoint address → open probe connections
)

// Start starts r, whose actor system must then have its address.
func Start(r *remote.Remote, address func() string) error {
	mu.Lock()
	defer mu.Unlock()
	r.Start()
	started[address()] = nil
	for addr := range started {
		c, err := handshake(addr)
		if err != nil {
			return fmt.Errorf("remote endpoint %s: %w", addr, err)
		}
		started[addr] = append(started[addr], c)
	}
	return nil
}

// Forget closes the probes of an endpoint that is being shut down.
func Forget(address string) {
	mu.Lock()
	defer mu.Unlock()
	for _, c := range started[address] {
		_ = c.Close()
	}
	delete(started, address)
}

// handshake sends an HTTP/2 client preface and an empty SETTINGS frame,
// waits for the server's first frame header, and returns the open connection.
func handshake(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	var header [9]byte
	if _, err := io.WriteString(c, preface); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, header[:]); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
