package redisprovider_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsactor/wsactor/cluster/redisprovider"
)

// The helper process prints lines "<prefix><value>" on stdout.
const (
	helperRejoinedPrefix = "HELPER_REJOINED="   // its new member ID, after a rejoin
	helperLocalLeft      = "HELPER_LOCAL_LEFT=" // what its own topology saw leave, after a rejoin
)

// memberProcess is a member running in another process: this test binary,
// run again as TestHelperNodeProcess.
type memberProcess struct {
	cmd   *exec.Cmd
	lines chan string
}

func startMemberProcess(t *testing.T, e *env) (*memberProcess, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNodeProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperAddrEnv+"="+e.addr, helperNameEnv+"="+e.name)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	mp := &memberProcess{cmd: cmd, lines: make(chan string, 16)}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once resumed
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	go func() {
		defer close(mp.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mp.lines <- sc.Text()
		}
	}()
	return mp, mp.value(t, helperIDPrefix, 20*time.Second)
}

// value waits for the line starting with prefix and returns the rest.
func (mp *memberProcess) value(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case line, ok := <-mp.lines:
			if !ok {
				t.Fatalf("the helper process ended without printing %s", prefix)
			}
			if v, ok := strings.CutPrefix(line, prefix); ok {
				return v
			}
		case <-deadline:
			t.Fatalf("the helper process did not print %s within %v", prefix, d)
		}
	}
}

// TestSIGKILLedNodeIsRemoved runs a member in a separate process, kills it with
// SIGKILL and expects this process's member to drop it within the TTL.
func TestSIGKILLedNodeIsRemoved(t *testing.T) {
	e := newEnv(t)
	observer := e.startNodes(1, redisprovider.Options{})[0]
	child, childID := startMemberProcess(t, e)

	waitUntil(t, 5*time.Second, "the observer sees the other process", func() bool { return observer.view.has(childID) })
	if err := child.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	_ = child.cmd.Wait()
	waitUntil(t, testTTL+testHeartbeat+slack, "the observer drops the SIGKILLed process", func() bool {
		return !observer.view.has(childID)
	})
	t.Logf("SIGKILLed member removed after %v (TTL %v)", time.Since(killedAt).Round(time.Millisecond), testTTL)
	if !observer.view.has(observer.id()) {
		t.Fatalf("observer lost itself: %v", observer.view.ids())
	}
}

// TestStalledMemberRejoins stops a member's process (SIGSTOP: a long pause,
// a frozen VM) until its peer drops it, then resumes it. protoactor never
// re-admits a member ID that left, so without a rejoin the member would stay
// invisible to its peer for good while it still saw the peer. It must find
// its tombstone and come back under a new member ID, which the peer admits,
// without its own topology ever losing anyone.
func TestStalledMemberRejoins(t *testing.T) {
	e := newEnv(t)
	observer := e.startNodes(1, redisprovider.Options{})[0]
	child, childID := startMemberProcess(t, e)
	waitUntil(t, 5*time.Second, "the observer sees the other process", func() bool { return observer.view.has(childID) })

	if err := child.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitUntil(t, testTTL+testHeartbeat+slack, "the observer drops the stopped process", func() bool {
		return !observer.view.has(childID)
	})
	rdb := e.client()
	departed := "wsactor:cluster:" + e.name + ":departed:" + childID
	if n, err := rdb.Exists(context.Background(), departed).Result(); err != nil || n != 1 {
		t.Fatalf("tombstone %s: %d, %v; want it written by the observer", departed, n, err)
	}
	if err := child.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	newID := child.value(t, helperRejoinedPrefix, 5*time.Second)
	if newID == childID || !strings.HasPrefix(newID, childID+".") {
		t.Fatalf("rejoined as %q; want a new member ID derived from %q", newID, childID)
	}
	waitUntil(t, testHeartbeat+slack, "the observer admits the rejoined member", func() bool { return observer.view.has(newID) })
	t.Logf("stopped for %v; admitted again %v after resuming (TTL %v, heartbeat %v)",
		resumed.Sub(stopped).Round(time.Millisecond), time.Since(resumed).Round(time.Millisecond), testTTL, testHeartbeat)
	if left := child.value(t, helperLocalLeft, 5*time.Second); left != "[]" {
		t.Fatalf("the rejoined member's own topology saw %s leave; want nobody", left)
	}
	if observer.view.has(childID) {
		t.Fatalf("the observer lists the dropped member ID %s again: %v", childID, observer.view.ids())
	}
	oldKey := "wsactor:cluster:" + e.name + ":member:" + childID
	if n, err := rdb.Exists(context.Background(), oldKey).Result(); err != nil || n != 0 {
		t.Fatalf("the dropped member's key %s: %d, %v; want it gone", oldKey, n, err)
	}
}

// TestHelperNodeProcess is the member process of the tests above. It prints
// its member ID, and after a rejoin its new one and what its own topology saw
// leave.
func TestHelperNodeProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestSIGKILLedNodeIsRemoved and TestStalledMemberRejoins")
	}
	e := &env{t: t, addr: os.Getenv(helperAddrEnv), name: os.Getenv(helperNameEnv)}
	n := e.startNodes(1, redisprovider.Options{})[0]
	fmt.Println(helperIDPrefix + n.id())
	// The parent kills this process; the bound only guards against orphans.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if id := n.p.MemberID(); id != n.id() {
			fmt.Println(helperRejoinedPrefix + id)
			// What the local topology lost, once the rejoin has had time to
			// show up in it: the next polls see the new incarnation.
			time.Sleep(3 * testHeartbeat)
			fmt.Printf("%s%v\n", helperLocalLeft, n.view.removed())
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Until(deadline))
}
