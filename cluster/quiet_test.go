package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/wsactor/wsactor/internal/redistest"
	"github.com/wsactor/wsactor/rooms/roomstest"
)

// logRecord is one JSON log record of a helper node (helperLogEnv=json).
type logRecord struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	line  string
}

// records parses what a helper node logged so far.
func (h *helper) records() []logRecord {
	var out []logRecord
	for _, line := range strings.Split(h.stderr.String(), "\n") {
		var r logRecord
		if json.Unmarshal([]byte(line), &r) == nil && r.Level != "" {
			r.line = line
			out = append(out, r)
		}
	}
	return out
}

// loud returns the records at levels, as lines.
func loud(recs []logRecord, levels ...string) []string {
	var out []string
	for _, r := range recs {
		if slices.Contains(levels, r.Level) {
			out = append(out, r.line)
		}
	}
	return out
}

// quietNode is a helper node of TestQuietLogs with its clients.
type quietNode struct {
	h    *helper
	addr string
}

// startQuietNode starts a helper node of cluster name on r, logging every
// record as JSON, with a group member and four room players connected, so
// that messages cross between the nodes (presence events, rooms placed on
// every node).
func startQuietNode(t *testing.T, r *redistest.Server, name string, i int) quietNode {
	t.Helper()
	h := startHelper(t, "TestHelperNode",
		helperEnv+"=node",
		helperRedisEnv+"="+r.Addr(),
		helperNameEnv+"="+name,
		helperPrefixEnv+"=wsactor-test:"+name+":",
		helperServerEnv+"=q",
		helperLogEnv+"=json",
	)
	var output []string
	url := h.value(t, helperURLPrefix, &output)
	addr := h.value(t, helperNodePrefix, &output)
	c := dialClient(t, url+fmt.Sprintf("?group=g&name=n%d", i))
	c.write("hi")
	for j := range 4 {
		pl := roomstest.Dial(t, strings.TrimSuffix(url, "/ws")+"/play", fmt.Sprintf("p%d.%d", i, j))
		pl.Join("ticker", fmt.Sprintf("r%d", j))
		go func() { // keeps reading the ticks until the node closes it
			for {
				if _, _, err := pl.Conn.Read(context.Background()); err != nil {
					return
				}
			}
		}()
	}
	go func() {
		for {
			if _, _, err := c.c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return quietNode{h: h, addr: addr}
}

// stop stops the node with SIGTERM (Server.Shutdown, then Node.Stop) and
// checks that both succeeded.
func (n quietNode) stop(t *testing.T) {
	t.Helper()
	if err := n.h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var output []string
	if res := n.h.value(t, helperStopped, &output); res != "<nil>" {
		t.Fatalf("node %s: Shutdown and Stop: %s", n.addr, res)
	}
	_ = n.h.cmd.Wait()
}

// TestQuietLogs runs a cluster of three node processes with traffic between
// them (presence events, rooms placed on every node with players on every
// node), and stops two of them cleanly, one after the other, then the
// third. No node logs an ERROR, and the survivor of the two departures logs
// no WARN either: protoactor's records of those departures ("EndpointWriter
// lost connection" and its kin, ERROR in protoactor) are Debug. Then a real
// failure: a fourth node is killed (SIGKILL) while it is a member, and the
// survivor says so at WARN or above.
func TestQuietLogs(t *testing.T) {
	r := redistest.Start(t)
	name := randomName("quiet-")
	var nodes []quietNode
	for i := range 3 {
		nodes = append(nodes, startQuietNode(t, r, name, i))
	}
	survivor := nodes[2]
	dump := func() {
		for _, n := range nodes {
			t.Logf("WARN and ERROR records of node %s:\n%s", n.addr, strings.Join(loud(n.h.records(), "WARN", "ERROR"), "\n"))
		}
	}
	nodes[0].stop(t)
	nodes[1].stop(t)
	for _, n := range nodes[:2] {
		if lines := loud(n.h.records(), "ERROR"); len(lines) > 0 {
			dump()
			t.Fatalf("node %s logged %d ERROR records while it stopped cleanly", n.addr, len(lines))
		}
	}
	recs := survivor.h.records()
	if lines := loud(recs, "WARN", "ERROR"); len(lines) > 0 {
		dump()
		t.Fatalf("the survivor logged %d WARN or ERROR records for two clean arrivals and departures; want none", len(lines))
	}
	// The departures did make protoactor speak, at Debug (the helper logs
	// Debug records).
	if !slices.ContainsFunc(recs, func(r logRecord) bool { return r.Msg == "EndpointWriter lost connection" && r.Level == "DEBUG" }) {
		t.Fatalf("the survivor logged no Debug \"EndpointWriter lost connection\": did the departures reach protoactor?\n%s",
			strings.Join(loud(recs, "DEBUG", "INFO"), "\n"))
	}

	// A real failure is still reported.
	doomed := startQuietNode(t, r, name, 3)
	before := len(survivor.h.records())
	if err := doomed.h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.h.cmd.Wait()
	waitUntil(t, testTimeout, "the survivor warns of the killed node", func() bool {
		return slices.ContainsFunc(survivor.h.records()[before:], func(r logRecord) bool {
			return (r.Level == "WARN" || r.Level == "ERROR") && strings.Contains(r.line, doomed.addr)
		})
	})
	for _, l := range loud(survivor.h.records()[before:], "WARN", "ERROR") {
		t.Logf("after SIGKILL: %s", l)
	}
	// The reconnection attempts to it end when membership drops it.
	waitUntil(t, testTimeout, "the survivor drops the killed node", func() bool {
		return slices.ContainsFunc(survivor.h.records()[before:], func(r logRecord) bool {
			return r.Msg == "cluster members changed" && !strings.Contains(r.line, `"left":null`)
		})
	})
	mark := len(survivor.h.records())
	survivor.stop(t)
	if lines := loud(survivor.h.records()[mark:], "ERROR"); len(lines) > 0 {
		dump()
		t.Fatalf("the last node logged %d ERROR records while it stopped cleanly", len(lines))
	}
}
