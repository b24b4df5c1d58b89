//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process of the run: a game node, a bots process or Redis. Its
// stdout and stderr go, line by line, to its log file and to memory, where
// expect looks for the lines that tell the run what the process is doing.
type proc struct {
	name string
	cmd  *exec.Cmd
	echo io.Writer // if set, stdout lines are copied here, prefixed by name

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced at each new line
	done    chan struct{} // closed once the process has been reaped
	err     error         // Wait's result, once done is closed
}

// startProc runs bin with args, logging to logPath. The process is in its
// own process group and dies with this one (Pdeathsig).
func startProc(name, logPath string, echo io.Writer, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, errors.Join(err, logf.Close())
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, errors.Join(err, logf.Close())
	}
	if err := cmd.Start(); err != nil {
		return nil, errors.Join(fmt.Errorf("start %s: %w", name, err), logf.Close())
	}
	p := &proc{name: name, cmd: cmd, echo: echo, changed: make(chan struct{}), done: make(chan struct{})}
	var logMu sync.Mutex
	var wg sync.WaitGroup
	for i, r := range []io.Reader{stdout, stderr} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				logMu.Lock()
				_, _ = fmt.Fprintln(logf, line)
				logMu.Unlock()
				if i == 0 && p.echo != nil {
					fmt.Fprintf(p.echo, "  [%s] %s\n", name, line)
				}
				p.add(line)
			}
		}()
	}
	go func() {
		wg.Wait() // the pipes must be drained before Wait closes them
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) add(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, line)
	close(p.changed)
	p.changed = make(chan struct{})
}

// output returns the lines so far.
func (p *proc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines[:len(p.lines):len(p.lines)]
}

// expect waits at most timeout for a line that contains s, and returns it.
func (p *proc) expect(ctx context.Context, s string, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		lines, changed := p.lines, p.changed
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if strings.Contains(lines[seen], s) {
				return lines[seen], nil
			}
		}
		select {
		case <-changed:
		case <-p.done:
			if len(p.output()) == seen {
				return "", fmt.Errorf("%s exited (%v) before printing %q%s", p.name, p.err, s, p.tail())
			}
		case <-deadline.C:
			return "", fmt.Errorf("%s did not print %q within %v%s", p.name, s, timeout, p.tail())
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// tail returns the last lines of the process's output, for errors.
func (p *proc) tail() string {
	lines := p.output()
	lines = lines[max(0, len(lines)-5):]
	if len(lines) == 0 {
		return ""
	}
	return "; its output ends:\n\t" + strings.Join(lines, "\n\t")
}

// wait waits at most timeout for the process to exit by itself.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v", p.name, timeout)
	}
}

// kill sends SIGKILL to the process (not waiting for it).
func (p *proc) kill() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }

// stop asks the process to exit with sig and kills its process group if it
// has not within grace. It returns the exit error, if any, but for the
// process's death by a signal (the one sent, or an earlier kill).
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		if isSignalled(p.err) {
			return nil
		}
		return p.err
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not exit within %v of %v: killed", p.name, grace, sig)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis runs a redis-server on a free loopback port, without
// persistence, and waits until it accepts connections.
func startRedis(dir string) (*proc, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", errors.New("redis-server not found: install it (apt-get install redis-server)")
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc("redis", filepath.Join(dir, "redis.log"), nil, bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning")
	if err != nil {
		return nil, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return p, addr, nil
		}
		if time.Now().After(deadline) {
			return nil, "", errors.Join(fmt.Errorf("redis-server on %s not up within 10s: %w", addr, err), p.stop(syscall.SIGKILL, time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
