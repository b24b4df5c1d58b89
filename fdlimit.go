package wsactor

import "math"

// DefaultMaxConnections is the MaxConnections a zero Options gets: the
// process's limit on open files (the soft RLIMIT_NOFILE, which Go raises to
// the hard limit at startup) minus a reserve for what else needs descriptors:
// Redis connections, cluster peers, listeners, files and logs, and the
// answers to connections refused at the cap. The reserve is a tenth of the
// limit, at least 256 but at most half of it: 20,000 descriptors give 18,000
// connections, 1,024 give 768, 512 give 256. Where the limit cannot be read
// (a platform without RLIMIT_NOFILE), it is -1: no cap.
func DefaultMaxConnections() int {
	limit, ok := fileLimit()
	if !ok {
		return -1
	}
	return maxConnectionsFor(limit)
}

// maxConnectionsFor derives MaxConnections from a limit on open files.
func maxConnectionsFor(limit uint64) int {
	reserve := max(limit/10, min(256, limit/2))
	n := limit - reserve
	if n > math.MaxInt32 {
		// RLIM_INFINITY or close to it: a cap that never binds.
		return math.MaxInt32
	}
	return max(int(n), 1)
}
