package benchmarks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client processes: BenchmarkIdleMemory, BenchmarkBroadcast and
// BenchmarkCrossNodeBroadcast run this test binary again as one of its
// TestHelper… functions, so that their clients' allocations, CPU time and
// goroutines are not counted in the process that measures the servers. This
// file is the part of that machinery they share: starting such a process,
// waiting for its "ready" line, and stopping it.

// envHelperURL and envHelperConns tell a re-executed test binary which URL to
// open how many connections to (TestHelperClientProcess,
// TestHelperBroadcastClients).
const (
	envHelperURL   = "WSACTOR_BENCH_HELPER_URL"
	envHelperConns = "WSACTOR_BENCH_HELPER_CONNS"
)

// helperProcess is a client process seen from the measuring process. It is
// driven without goroutines of ours (pipes with deadlines, stderr to a file)
// so that the measuring process's goroutine count is the servers' alone.
type helperProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *os.File
	stderr *os.File
}

// startHelperProcess re-executes the test binary as the test function named
// test, with env added to its environment and its stderr in a temporary file
// named after logPattern (as os.CreateTemp takes it), and waits until the
// process prints "ready". The returned reader has consumed that line; the
// caller reads the process's later lines from it.
func startHelperProcess(test, logPattern string, env ...string) (_ *helperProcess, _ *bufio.Reader, err error) {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	h := &helperProcess{cmd: cmd}
	if h.stderr, err = os.CreateTemp("", logPattern); err != nil {
		return nil, nil, err
	}
	cmd.Stderr = h.stderr
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, nil, errors.Join(err, h.cleanup())
	}
	var stdoutW *os.File
	if h.stdout, stdoutW, err = os.Pipe(); err != nil {
		return nil, nil, errors.Join(err, h.cleanup())
	}
	cmd.Stdout = stdoutW
	err = cmd.Start()
	_ = stdoutW.Close()
	if err != nil {
		return nil, nil, errors.Join(err, h.cleanup())
	}
	r, err := h.waitReady()
	if err != nil {
		return nil, nil, errors.Join(err, h.stop())
	}
	return h, r, nil
}

// waitReady reads the process's stdout until its "ready" line, keeping what
// came before for the error if the line never comes.
func (h *helperProcess) waitReady() (*bufio.Reader, error) {
	_ = h.stdout.SetReadDeadline(time.Now().Add(waitLimit))
	r := bufio.NewReader(h.stdout)
	var out strings.Builder
	for {
		line, err := r.ReadString('\n')
		if line == "ready\n" {
			return r, nil
		}
		out.WriteString(line)
		if err != nil {
			return nil, fmt.Errorf("client process not ready: %w; its output:\n%s", err, out.String())
		}
	}
}

// stop closes the helper's stdin, which makes it close its connections and
// exit, and waits for it, killing it if it does not exit in time.
func (h *helperProcess) stop() error {
	_ = h.stdin.Close()
	_ = h.stdout.SetReadDeadline(time.Now().Add(waitLimit))
	_, _ = io.Copy(io.Discard, h.stdout)
	kill := time.AfterFunc(waitLimit, func() { _ = h.cmd.Process.Kill() })
	err := h.cmd.Wait()
	kill.Stop()
	if err != nil {
		stderr, _ := os.ReadFile(h.stderr.Name())
		err = fmt.Errorf("client process: %w\n%s", err, stderr)
	}
	return errors.Join(err, h.cleanup())
}

func (h *helperProcess) cleanup() error {
	if h.stdout != nil {
		_ = h.stdout.Close()
	}
	_ = h.stderr.Close()
	return os.Remove(h.stderr.Name())
}

// helperURLConns reads envHelperURL and envHelperConns in a client process
// started with them, failing t if either is missing or malformed.
func helperURLConns(t *testing.T) (url string, n int) {
	t.Helper()
	url = os.Getenv(envHelperURL)
	n, err := strconv.Atoi(os.Getenv(envHelperConns))
	if err != nil || n <= 0 || url == "" {
		t.Fatalf("bad %s=%q or %s=%q", envHelperURL, url, envHelperConns, os.Getenv(envHelperConns))
	}
	return url, n
}

// waitStdinClosed blocks a client process until the measuring process closes
// its stdin (helperProcess.stop), its signal to close the connections and
// exit.
func waitStdinClosed() {
	_, _ = io.Copy(io.Discard, os.Stdin)
}
