package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor/examples/game/bots/swarm"
	"github.com/wsactor/wsactor/examples/game/gameserver"
)

// TestBadFlags: every mistake is named before anything is dialled.
func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-target is required"},
		{[]string{"-target", "localhost:8080"}, "want ws://host:port"},
		{[]string{"-target", "ws://127.0.0.1:1", "-part", "3/2"}, "want I/N"},
		{[]string{"-target", "ws://127.0.0.1:1", "-per-room", "9"}, "per-room 1 to 8"},
		{[]string{"-target", "ws://127.0.0.1:1", "-duration", "25h"}, "at most"},
		{[]string{"-target", "ws://127.0.0.1:1", "extra"}, "unexpected arguments"},
	} {
		err := run(context.Background(), tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestDeadTarget: a node that is not there ends the run with the reason.
func TestDeadTarget(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	err = run(context.Background(), []string{"-target", "ws://" + l.Addr().String(), "-rooms", "1", "-per-room", "1", "-ramp-timeout", "300ms"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no bot got a seat") || !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %v, want no seat, connection refused", err)
	}
}

// TestRun plays a short window against a real server and prints the
// summary and the JSON report.
func TestRun(t *testing.T) {
	mux, s := gameserver.New(gameserver.Config{Address: "test-node", Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		hs.Close()
	})
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	var out bytes.Buffer
	err := run(context.Background(), []string{"-target", "ws" + strings.TrimPrefix(hs.URL, "http"), "-rooms", "2", "-per-room", "2",
		"-duration", "300ms", "-report-every", "100ms", "-json", jsonPath}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"measuring: 4 of 4 bots seated", "bots:          4 (rooms)", "states/bot/s:", "inter-arrival:", "room gaps:     2 rooms"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r swarm.Report
	if err := json.Unmarshal(b, &r); err != nil || r.Bots != 4 || len(r.PerBot) != 4 {
		t.Errorf("JSON report %s: %v", b, err)
	}
}
