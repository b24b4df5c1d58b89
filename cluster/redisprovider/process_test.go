package redisprovider_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wsactor/wsactor/cluster/redisprovider"
)

// TestSIGKILLedNodeIsRemoved runs a member in a separate process, kills it with
// SIGKILL and expects this process's member to drop it within the TTL.
func TestSIGKILLedNodeIsRemoved(t *testing.T) {
	e := newEnv(t)
	observer := e.startNodes(1, redisprovider.Options{})[0]

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
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	idc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), helperIDPrefix); ok {
				idc <- id
			}
		}
		close(idc)
	}()
	var childID string
	select {
	case id, ok := <-idc:
		if !ok {
			t.Fatal("helper process exited without starting a member")
		}
		childID = id
	case <-time.After(20 * time.Second):
		t.Fatal("helper process did not start a member")
	}

	waitUntil(t, 5*time.Second, "the observer sees the other process", func() bool { return observer.view.has(childID) })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	_ = cmd.Wait()
	waitUntil(t, testTTL+testHeartbeat+slack, "the observer drops the SIGKILLed process", func() bool {
		return !observer.view.has(childID)
	})
	t.Logf("SIGKILLed member removed after %v (TTL %v)", time.Since(killedAt).Round(time.Millisecond), testTTL)
	if !observer.view.has(observer.id()) {
		t.Fatalf("observer lost itself: %v", observer.view.ids())
	}
}

// TestHelperNodeProcess is the child of TestSIGKILLedNodeIsRemoved.
func TestHelperNodeProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestSIGKILLedNodeIsRemoved")
	}
	e := &env{t: t, addr: os.Getenv(helperAddrEnv), name: os.Getenv(helperNameEnv)}
	n := e.startNodes(1, redisprovider.Options{})[0]
	fmt.Println(helperIDPrefix + n.id())
	time.Sleep(30 * time.Second) // the parent kills this process; the bound only guards against orphans
}
