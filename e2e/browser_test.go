package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds each browser step: a page action, or a wait for a DOM
// condition.
const stepTimeout = 20 * time.Second

// findChromium returns the browser to drive, or "".
func findChromium() string {
	if p := os.Getenv("WSACTOR_CHROMIUM"); p != "" {
		p, _ = exec.LookPath(p) // named explicitly: that one or none
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

var skipNotice sync.Once

// newBrowser starts headless Chromium with a fresh profile, stopped when the
// test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findChromium()
	if path == "" {
		msg := "no Chromium found (install Debian's chromium package, or set WSACTOR_CHROMIUM)"
		if os.Getenv("WSACTOR_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; WSACTOR_REQUIRE_BROWSER=1 makes this a failure")
		}
		// go test hides a skip's message unless -v: say it on stderr too.
		skipNotice.Do(func() { fmt.Fprintln(os.Stderr, "e2e: SKIPPING THE BROWSER TESTS: "+msg) })
		t.Skip("SKIPPING THE BROWSER TESTS: " + msg)
	}
	profile := t.TempDir() // removed after the browser has stopped (cleanups run last-in, first-out)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // containers and CI runners often run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Two pages run side by side: neither may have its timers (the
		// reconnection backoff) throttled as a background tab.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1200, 800),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	// The first action starts the browser and ties its life to the context
	// it runs with, so it runs with ctx itself and is bounded here instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start %s: %v", path, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("start %s: no answer within 30s", path)
	}
	return ctx
}

// page is one tab in a browser context of its own (its own cookies and
// storage), like a second user on another machine.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu   sync.Mutex
	errs []string // uncaught exceptions and console errors
}

func newPage(t *testing.T, browser context.Context, name string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{t: t, name: name, ctx: ctx}
	if err := chromedp.Listen(ctx, p.observe); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { // runs before cancel: the page is still there
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, e := range p.errs {
			t.Errorf("%s: JavaScript error: %s", name, e)
		}
	})
	return p
}

// observe records JavaScript errors; it runs in chromedp's event loop and
// must return at once.
func (p *page) observe(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		msg = fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1)
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			parts = append(parts, string(a.Value)+a.Description)
		}
		msg = "console.error: " + strings.Join(parts, " ")
	default:
		return
	}
	p.mu.Lock()
	p.errs = append(p.errs, msg)
	p.mu.Unlock()
}

// do runs actions on the page within stepTimeout.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.describe())
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes it.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v\n%s", p.name, expr, err, p.describe())
	}
	return v
}

// waitFor waits until the JavaScript predicate holds, re-checking it on
// every DOM change, for at most stepTimeout.
//
// chromedp runs a poll in the execution context it has on record for the
// page's document, and records a new document's context in another
// goroutine than the one that ends a Navigate or Reload (chromedp
// v0.22.1, target.go: listeners run before runtimeEvent): right after one,
// the poll can name the replaced document's context, which the browser no
// longer has ("Cannot find context with specified id": 2 of 9 runs of
// TestGameInBrowser beside a CPU hog, after a Navigate). Such a poll ran
// nowhere, so it is run again, within the same deadline.
func (p *page) waitFor(what, predicate string) {
	p.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	ctx, cancel := context.WithDeadline(p.ctx, deadline.Add(5*time.Second))
	defer cancel()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			p.t.Fatalf("%s: waiting until %s: %v\n%s", p.name, what, chromedp.ErrPollingTimeout, p.describe())
		}
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
			chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(left)))
		if err == nil {
			return
		}
		if !replacedContext(err) {
			p.t.Fatalf("%s: waiting until %s: %v\n%s", p.name, what, err, p.describe())
		}
		p.t.Logf("%s: waiting until %s: the poll named a replaced document (%v); polling again", p.name, what, err)
		time.Sleep(10 * time.Millisecond) // until chromedp has recorded the new document's context
	}
}

// replacedContext reports whether err is the browser's answer to a call in
// an execution context that no longer exists: that of a document the page
// has replaced.
func replacedContext(err error) bool {
	var e *cdproto.Error
	return errors.As(err, &e) && e.Message == "Cannot find context with specified id"
}

// describe is what a failing step shows of the page.
func (p *page) describe() string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : "(no body)"`))
	if err != nil {
		return "(page unavailable: " + err.Error() + ")"
	}
	return "--- page text ---\n" + s + "\n---"
}

// screenshot saves the page as PNG in dir (and in $WSACTOR_E2E_ARTIFACTS)
// and returns the first path.
func (p *page) screenshot(dir, file string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	if extra := os.Getenv("WSACTOR_E2E_ARTIFACTS"); extra != "" {
		if err := os.MkdirAll(extra, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(extra, file), png, 0o644)
		}
	}
	return path
}

// jsString quotes s for JavaScript (a JSON string is one).
func jsString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// server is what the tests serve: a *wsactor.Server, whose Shutdown also
// stops the listeners it serves.
type server interface {
	ServeHandler(l net.Listener, h http.Handler) error
	Shutdown(ctx context.Context) error
}

// listen binds addr ("127.0.0.1:0" for a fresh port). Rebinding a port that
// was just released can briefly fail while the old sockets drain, so it
// retries until the step deadline.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("listen %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serve runs s on l until the test ends or stop is called; stop shuts the
// server down gracefully (clients see 1001) and waits for it.
func serve(t *testing.T, s server, h http.Handler, l net.Listener) (stop func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.ServeHandler(l, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
