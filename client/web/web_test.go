package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/wsactor/wsactor/client/web"
)

func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /wsactor.js", web.Handler())
	mux.Handle("/static/", http.StripPrefix("/static", web.Handler()))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	for _, path := range []string{"/wsactor.js", "/static/wsactor.js"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		if string(body) != string(web.Script()) {
			t.Errorf("GET %s: body differs from the embedded script", path)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", path)
		}
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", path, resp.StatusCode)
		}
	}

	resp, err := http.Get(ts.URL + "/static/other.js")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /static/other.js: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Post(ts.URL+"/static/wsactor.js", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

// TestModuleExports keeps the documented API in the module. The behaviour is
// tested in a real browser by package e2e.
func TestModuleExports(t *testing.T) {
	src := string(web.Script())
	for _, want := range []string{
		"export function connect(", "export class Client", "export class RequestError",
		"export function backoffDelay(", "export function defaultIsFinal(", "export const DEFAULTS",
		"  send(type, payload", "  request(type, payload", "  refresh({ timeout", "  on(type, handler)", "  close(code", "  stateText()",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("wsactor.js lacks %q", want)
		}
	}
}

// TestModuleSyntax parses the module with Node.js when it is installed.
func TestModuleSyntax(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; the e2e package runs the module in Chromium")
	}
	cmd := exec.Command(node, "--input-type=module", "--check")
	cmd.Stdin = strings.NewReader(string(web.Script()))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node --check: %v\n%s", err, out)
	}
}
