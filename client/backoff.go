package client

import "time"

// backoff returns how long to wait before reconnection attempt n (1 for the
// first after a loss): a uniformly random duration in [0, ceiling), where the
// ceiling is lo·2^(n-1) capped at hi ("full jitter"). randN returns a
// uniformly random number in [0, n), like math/rand/v2.Int64N; tests inject
// a deterministic one.
func backoff(n int, lo, hi time.Duration, randN func(int64) int64) time.Duration {
	ceiling := lo
	for i := 1; i < n && ceiling < hi; i++ {
		if ceiling > hi/2 { // doubling would pass hi (or overflow)
			ceiling = hi
			break
		}
		ceiling *= 2
	}
	ceiling = min(ceiling, hi)
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(randN(int64(ceiling)))
}
