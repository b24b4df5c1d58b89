package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is a wsload process (a server or a client process) started by the
// orchestrator. Its stderr goes to a log file, its stdout is read line by
// line, and its stdin carries commands.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string   // stdout, line by line; closed at EOF
	done    chan struct{} // closed once the process has been reaped
	err     error         // Wait's result, once done is closed
}

// startChild runs exe with args. If ctx ends, the child's process group is
// killed.
func startChild(ctx context.Context, exe string, env []string, name, logPath string, args ...string) (*child, error) {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = env
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, errors.Join(err, logf.Close())
	}
	// A pipe of our own rather than StdoutPipe: Wait must not close it
	// before every line has been read.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, errors.Join(err, logf.Close())
	}
	cmd.Stdout = w
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start %s: %w", name, err), r.Close(), logf.Close())
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, stdin: stdin, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		defer close(c.lines)
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 64<<20) // summaries carry histograms
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	go func() {
		c.err = cmd.Wait()
		_ = logf.Close()
		close(c.done)
	}()
	return c, nil
}

// expect waits at most timeout for a stdout line starting with prefix and
// returns the rest of it. Other lines are skipped.
func (c *child) expect(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				<-c.done
				return "", fmt.Errorf("%s exited (%v) before printing %q%s", c.name, c.err, prefix, c.logTail())
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return rest, nil
			}
		case <-t.C:
			return "", fmt.Errorf("%s did not print %q within %v%s", c.name, prefix, timeout, c.logTail())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// send writes a command line to the child's stdin.
func (c *child) send(cmd string) error {
	_, err := io.WriteString(c.stdin, cmd+"\n")
	return err
}

// stop asks the child to finish with sig (none: it finishes on its own,
// e.g. after its stdin closed), and kills it if it has not exited within
// grace. It returns the child's exit error, if any.
func (c *child) stop(sig syscall.Signal, grace time.Duration) error {
	_ = c.stdin.Close()
	select {
	case <-c.done:
		return c.err
	default:
	}
	if sig != 0 {
		_ = c.cmd.Process.Signal(sig)
	}
	select {
	case <-c.done:
		return c.err
	case <-time.After(grace):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	return fmt.Errorf("%s did not exit within %v: killed%s", c.name, grace, c.logTail())
}

// logTail returns the last lines of the child's log, for error messages.
func (c *child) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil || len(b) == 0 {
		return " (log: " + c.logPath + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-5):]
	return "; log " + c.logPath + " ends:\n\t" + strings.Join(lines, "\n\t")
}
