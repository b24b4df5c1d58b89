package transport

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkRateLimitCheck measures what the read loop adds per message when
// both buckets are on and never bind: two AllowN calls.
func BenchmarkRateLimitCheck(b *testing.B) {
	o := Options{RateLimit: RateLimit{MessagesPerSecond: 1e9, BytesPerSecond: 1e12}}.WithDefaults()
	c := &Conn{
		opts:      &o,
		msgLimit:  rate.NewLimiter(rate.Limit(o.RateLimit.MessagesPerSecond), o.RateLimit.MessageBurst),
		byteLimit: rate.NewLimiter(rate.Limit(o.RateLimit.BytesPerSecond), o.RateLimit.ByteBurst),
	}
	now := time.Now()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if c.rateLimited(now, 256) {
			b.Fatal("limited")
		}
	}
}
