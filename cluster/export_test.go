package cluster

import "testing"

// WritePKI writes a CA and a node certificate (for 127.0.0.1 and
// node.wsactor, usable as server and client) into dir, for the external
// tests.
func WritePKI(t testing.TB, dir string) (ca, cert, key string) { return pki(t, dir) }
