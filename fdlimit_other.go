//go:build !unix

package wsactor

// fileLimit reports that this platform has no limit on open files to derive
// MaxConnections from (Windows counts handles, not descriptors).
func fileLimit() (uint64, bool) { return 0, false }
