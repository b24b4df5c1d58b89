package actors

import "testing"

// BenchmarkIDAddress is the parse every cross-node send makes of its ID.
func BenchmarkIDAddress(b *testing.B) {
	id := formatID("chat", newName(), "10.0.12.7:42001")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := id.Address(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIDPID is ID.PID, which a send to a connection of another node uses.
func BenchmarkIDPID(b *testing.B) {
	id := formatID("chat", newName(), "10.0.12.7:42001")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := id.PID(); err != nil {
			b.Fatal(err)
		}
	}
}
