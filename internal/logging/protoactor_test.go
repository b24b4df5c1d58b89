package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestProtoactorLevels(t *testing.T) {
	const live, gone = "10.0.0.1:6000", "10.0.0.2:6000"
	lost := func(l *slog.Logger, address, err string) {
		l.Error("EndpointWriter lost connection", slog.String("address", address), slog.Any("error", errors.New(err)))
	}
	for _, tc := range []struct {
		name     string
		cluster  bool
		stopping bool
		log      func(l *slog.Logger)
		want     string // the level logged, or "" for nothing
	}{
		{"single node: unchanged", false, false, func(l *slog.Logger) { lost(l, gone, "EOF") }, "ERROR"},
		{"a member that left", true, false, func(l *slog.Logger) { lost(l, gone, "EOF") }, "DEBUG"},
		{"a live member's stream broke", true, false, func(l *slog.Logger) { lost(l, live, "EOF") }, "WARN"},
		{"closed by this node", true, false, func(l *slog.Logger) { lost(l, live, "rpc error: code = Canceled desc = "+closedHere) }, "DEBUG"},
		{"this node stopping", true, true, func(l *slog.Logger) { lost(l, live, "EOF") }, "DEBUG"},
		{"dialing a live member fails", true, false, func(l *slog.Logger) {
			l.Error("EndpointWriter failed to connect", slog.String("address", live), slog.Any("error", errors.New("refused")))
		}, "ERROR"},
		{"dialing a member that left", true, false, func(l *slog.Logger) {
			l.Error("EndpointWriter failed to connect", slog.String("address", gone), slog.Any("error", errors.New("refused")))
		}, "DEBUG"},
		{"a system message to a stopped actor", true, false, func(l *slog.Logger) {
			l.Warn("EndpointReader failed to get local process", slog.String("pid", "ws/x"))
		}, "DEBUG"},
		{"an unknown failure", true, true, func(l *slog.Logger) { l.Error("EndpointReader failed to deserialize") }, "ERROR"},
		{"protoactor's Info below min", true, false, func(l *slog.Logger) { l.Info("[DeadLetter]") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := Protoactor(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), slog.LevelWarn)
			if tc.cluster {
				h.SetMembers(func(a string) bool { return a == live })
			}
			if tc.stopping {
				h.SetStopping()
			}
			tc.log(slog.New(h).With(slog.String("component", "protoactor")))
			got := ""
			if _, rest, ok := strings.Cut(buf.String(), "level="); ok {
				got, _, _ = strings.Cut(rest, " ")
			}
			if got != tc.want {
				t.Fatalf("logged %q; want level %q", buf.String(), tc.want)
			}
		})
	}
	// A handler that does not log Debug drops what was lowered to it.
	var buf bytes.Buffer
	h := Protoactor(slog.NewTextHandler(&buf, nil), slog.LevelWarn)
	h.SetMembers(func(string) bool { return false })
	lost(slog.New(h), gone, "EOF")
	if buf.Len() != 0 || h.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatalf("logged %q at Info", buf.String())
	}
}
