// Package logging adapts log/slog handlers for wsactor's dependencies.
package logging

import (
	"context"
	"log/slog"
)

// MinLevel wraps h so that records below min are discarded. wsactor routes
// protoactor's own logger through it: protoactor logs routine events (actor
// restarts, dead letters) at Info, which would drown the application's logs.
func MinLevel(h slog.Handler, min slog.Leveler) slog.Handler {
	return &minLevelHandler{inner: h, min: min}
}

type minLevelHandler struct {
	inner slog.Handler
	min   slog.Leveler
}

func (h *minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min.Level() && h.inner.Enabled(ctx, l)
}

func (h *minLevelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}

func (h *minLevelHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &minLevelHandler{inner: h.inner.WithAttrs(attrs), min: h.min}
}

func (h *minLevelHandler) WithGroup(name string) slog.Handler {
	return &minLevelHandler{inner: h.inner.WithGroup(name), min: h.min}
}

// Discard is a logger that writes nothing.
var Discard = slog.New(slog.DiscardHandler)
