package benchmarks

import (
	"testing"

	"github.com/wsactor/wsactor"
)

// BenchmarkEchoRateLimit is BenchmarkEcho on wsactor alone, with the inbound
// rate limiter off and on (at rates no benchmark reaches, so it never
// refuses a message): the difference is what checking the two token
// buckets costs per message.
func BenchmarkEchoRateLimit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		limit wsactor.RateLimit
	}{
		{"off", wsactor.RateLimit{MessagesPerSecond: -1, BytesPerSecond: -1}},
		{"on", unboundLimit},
	} {
		b.Run("limiter="+bc.name, func(b *testing.B) {
			t := startActorLimited(bc.limit)
			b.Cleanup(func() { // after the clients' cleanup: Close waits for their connections to end
				if err := t.Close(); err != nil {
					b.Error(err)
				}
			})
			conns := clients(b, t, 1)
			before := readCounters()
			b.ResetTimer()
			d, err := echoRun(conns, b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/d.Seconds(), "msgs/s")
			reportPerMessage(b, before, readCounters(), b.N)
			if n := t.s.Stats().RateLimited; n != 0 {
				b.Fatalf("%d messages refused: the limit must not bind", n)
			}
		})
	}
}
