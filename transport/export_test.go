package transport

import "time"

// EncodeClientFrame encodes a masked client frame, for the external tests.
var EncodeClientFrame = encodeFrame

// SetRateClock replaces the rate limiters' clock of connections accepted
// with o, so that tests decide when tokens refill.
func SetRateClock(o *Options, now func() time.Time) { o.now = now }
