//go:build !unix

package swarm

// cpuTime is 0 where getrusage does not exist: the report's client CPU is
// then 0.
func cpuTime() float64 { return 0 }
