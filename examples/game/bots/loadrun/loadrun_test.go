//go:build linux

package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseSetups(t *testing.T) {
	got, err := parseSetups("1, 2,2k,1c,3ck")
	if err != nil {
		t.Fatal(err)
	}
	want := []setup{{"1", 1, false, false}, {"2", 2, true, false}, {"2k", 2, true, true}, {"1c", 1, true, false}, {"3ck", 3, true, true}}
	if len(got) != len(want) {
		t.Fatalf("%+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("setup %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "0", "1k", "x", "10", "2kk"} {
		if _, err := parseSetups(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseFlagsBounds(t *testing.T) {
	for _, args := range [][]string{
		{"-rounds", "0"},
		{"-rounds", "21"},
		{"-duration", "11m"},
		{"-per-room", "9"},
		{"-rooms", "100000"},
		{"-bot-procs", "200"},
		{"-setups", "2k", "-kill-after", "40s"},
		{"-config", "/nonexistent.yaml"},
		{"extra"},
	} {
		if _, err := parseFlags(append(args, "-out", t.TempDir()), &bytes.Buffer{}); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	o, err := parseFlags([]string{"-config", "cluster.yaml", "-out", t.TempDir()}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if setupNames(o.setups) != "1,2,2k" {
		t.Errorf("default setups %s, want 1,2,2k: a single node, 2 nodes, 2 nodes and one killed", setupNames(o.setups))
	}
	if o.botProcs != 1 || o.rooms != 125 || o.perRoom != 8 || o.duration != 30*time.Second {
		t.Errorf("defaults %+v: want 125 rooms of 8 in one bots process for 30 s", o)
	}
}

func TestCountLogs(t *testing.T) {
	lines := []string{
		`time=x level=INFO msg="game: starting"`,
		`time=x level=WARN msg="rooms: a \"quoted\" warning" room=a`,
		`time=x level=WARN msg="rooms: a \"quoted\" warning" room=b`,
		`time=x level=ERROR msg=plain`,
		`time=x level=ERROR msg=plain`,
	}
	got := countLogs("n1", lines, 4)
	if len(got) != 3 || got[0].Msg != `rooms: a "quoted" warning` || got[0].Count != 2 || got[1].Phase != "run" || got[2].Phase != "stop" || got[2].Count != 1 {
		t.Errorf("%+v", got)
	}
}

func TestProcFS(t *testing.T) {
	cpu, err := cpuSeconds(os.Getpid())
	if err != nil || cpu < 0 {
		t.Errorf("cpuSeconds: %v, %v", cpu, err)
	}
	rss, peak, err := memory(os.Getpid())
	if err != nil || rss <= 0 || peak < rss {
		t.Errorf("memory: %v, %v, %v", rss, peak, err)
	}
	if _, err := cpuSeconds(-1); err == nil {
		t.Error("cpuSeconds of no process: no error")
	}
}

// TestProcStop: a process that ignores the polite signal is killed with
// its process group after the grace, and the lines it printed were seen.
func TestProcStop(t *testing.T) {
	p, err := startProc("sh", t.TempDir()+"/sh.log", nil, "/bin/sh", "-c", `trap "" TERM; echo ready; sleep 60 & wait`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.expect(context.Background(), "ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err = p.stop(syscall.SIGTERM, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("stop: %v, want killed after the grace", err)
	}
	if _, err := p.expect(context.Background(), "never printed", time.Second); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("expect after exit: %v", err)
	}
}

// TestRedis: the run's redis-server answers on loopback and is gone once
// stopped.
func TestRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip(err)
	}
	p, addr, err := startRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("PING\r\n"))
	buf := make([]byte, 7)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	_ = c.Close()
	if string(buf[:n]) != "+PONG\r\n" {
		t.Errorf("PING: %q", buf[:n])
	}
	if err := p.stop(syscall.SIGTERM, 5*time.Second); err != nil {
		t.Error(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Error("redis-server still answers after stop")
	}
}
