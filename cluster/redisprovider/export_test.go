package redisprovider

import "time"

// Crash stops heartbeating and watching without deleting the key or
// publishing a leave: what SIGKILL or a partition from Redis looks like to peers.
func Crash(p *Provider) {
	p.halt()
	p.wg.Wait()
}

// Stopped reports whether p's goroutines all returned within d.
func Stopped(p *Provider, d time.Duration) bool {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// MemberKey is the Redis key p registered under.
func MemberKey(p *Provider) string { return p.self.Load().key }
