//go:build unix

package wsactor

import (
	"syscall"
	"testing"
)

// The default follows the process's soft limit on open files, read when the
// server is made.
func TestDefaultMaxConnectionsFollowsRlimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if got, want := DefaultMaxConnections(), maxConnectionsFor(uint64(rl.Cur)); got != want {
		t.Errorf("DefaultMaxConnections() = %d with a soft limit of %d, want %d", got, rl.Cur, want)
	}
	if uint64(rl.Max) < 2048 {
		t.Skipf("hard limit %d: cannot lower the soft limit to 2048 and back", rl.Max)
	}
	lowered := rl
	lowered.Cur = 2048
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Errorf("restoring the limit: %v", err)
		}
	})
	if got := DefaultMaxConnections(); got != 1792 {
		t.Errorf("DefaultMaxConnections() = %d with a soft limit of 2048, want 1792", got)
	}
	s := New(Options{Logger: nil, Name: "fdlimit"})
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	if s.opts.MaxConnections != 1792 {
		t.Errorf("New(Options{}).MaxConnections = %d with a soft limit of 2048, want 1792", s.opts.MaxConnections)
	}
}
