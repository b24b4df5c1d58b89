// Package remotestart starts protoactor remote endpoints safely when a
// process runs several of them (tests with several in-process nodes).
//
// remote.(*Remote).Start writes gRPC's process-wide logger
// (protoactor-go remote/server.go:74, grpclog.SetLoggerV2) while the gRPC
// servers of endpoints already started read it from their own goroutines: a
// data race, harmless with one endpoint per process but reported by -race
// with two. Start serializes starts and, after each, exchanges HTTP/2
// connection prefaces with every endpoint started so far. Socket reads and
// writes carry happens-before edges in the race detector's model, so each
// server's earlier reads of the logger are ordered before the next write.
// The probe connections stay open until the endpoint is forgotten: a closing
// gRPC transport logs too, and that must not overlap a later Start.
//
// When the *remote.Remote is created and started inside another call
// (protoactor's Cluster.StartMember and StartClient), Start cannot wrap it:
// a Gate orders such starts instead. Both record the endpoints they start in
// one registry, so each start is ordered after every endpoint of the process.
//
// It is for processes that run several endpoints, i.e. tests; a production
// node has one endpoint and calls remote.Start directly.
package remotestart

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/remote"
)

var (
	mu      sync.Mutex
	started = map[string][]net.Conn{}  // endpoint address → open probe connections
	secure  = map[string]*tls.Config{} // endpoint address → how to probe it, if it speaks TLS
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
	delete(secure, address)
}

// Gate orders a batch of remote starts that happen inside calls this
// package cannot wrap. Open one with OpenGate, call Before just ahead of each
// start and After once the new endpoint listens, and Close it when every
// start of the batch has returned.
//
// Before exchanges HTTP/2 prefaces with every live endpoint, so that their
// servers' earlier reads of gRPC's logger are ordered before the start's
// write of it. The connections stay open until every start of the batch has
// returned, so that the servers' reads of the logger when they close come
// after every write; Close then ends them cleanly.
//
// A Gate holds the lock of Start and Forget from OpenGate to Close: calling
// either in between, from the same goroutine, deadlocks.
type Gate struct {
	conns []net.Conn
}

// OpenGate keeps every other start and Forget out until Close.
func OpenGate() *Gate {
	mu.Lock()
	return &Gate{}
}

// Before exchanges HTTP/2 prefaces with every live endpoint; call it just
// before a start. After an error the caller must still Close the gate.
func (g *Gate) Before() error {
	for addr := range started {
		c, err := handshake(addr)
		if err != nil {
			return fmt.Errorf("handshake with remote endpoint %s: %w", addr, err)
		}
		g.conns = append(g.conns, c)
	}
	return nil
}

// After records the address of the endpoint just started, so that later
// starts are ordered after its reads of the logger too. Forget it when the
// endpoint shuts down: a later Before would fail to reach it.
func (g *Gate) After(address string) {
	if _, ok := started[address]; !ok {
		started[address] = nil
	}
}

// AfterTLS is After for an endpoint that speaks TLS (remote.tls): probes
// dial it with a clone of client, which must present a certificate if the
// endpoint asks for one.
func (g *Gate) AfterTLS(address string, client *tls.Config) {
	cfg := client.Clone()
	cfg.NextProtos = []string{"h2"}
	secure[address] = cfg
	g.After(address)
}

// Close ends the batch's preface exchanges and lets the next start in. It
// writes a frame now (a release after the starts) and sends a FIN rather
// than an RST, so that each server reads it successfully (an acquire) before
// its connection-closing code reads the logger.
func (g *Gate) Close() {
	defer mu.Unlock()
	const settingsAck = "\x00\x00\x00\x04\x01\x00\x00\x00\x00"
	for _, c := range g.conns {
		_, _ = io.WriteString(c, settingsAck)
		_ = c.(interface{ CloseWrite() error }).CloseWrite() // a *net.TCPConn or a *tls.Conn
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, c) // until the server closes too
		_ = c.Close()
	}
}

// handshake sends an HTTP/2 client preface and an empty SETTINGS frame,
// waits for the server's first frame header, and returns the open connection.
func handshake(addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if cfg := secure[addr]; cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
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
	// The connection outlives the handshake (until Forget or Gate.Close),
	// whose closing write must not fail on an expired deadline.
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
