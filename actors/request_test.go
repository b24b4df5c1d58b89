package actors

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// TestPackedRequest: what a connection keeps of its upgrade request decodes
// to the URL and headers net/http parsed, multi-valued and odd ones included,
// and each call returns a copy of its own.
func TestPackedRequest(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/ws/room%2F1?x=1&x=2&y=%C3%A9", nil)
	r.Header.Set("Cookie", "session=abc; theme=dark")
	r.Header.Add("X-Multi", "one")
	r.Header.Add("X-Multi", "two")
	r.Header.Set("X-Long", strings.Repeat("v", 300))
	r.Header.Set("X-Empty", "")
	r.Header.Set("X-Odd", "a\x00b\nc")
	p := packRequest(r)

	if got := p.header(); !reflect.DeepEqual(got, r.Header) {
		t.Errorf("header = %v, want %v", got, r.Header)
	}
	if got, want := p.url().String(), r.URL.String(); got != want {
		t.Errorf("url = %q, want %q", got, want)
	}
	if got := p.url().Query()["x"]; !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("query x = %v", got)
	}
	h := p.header()
	h.Set("X-Multi", "changed")
	if got := p.header().Values("X-Multi"); !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Errorf("a caller's change reached the kept header: %v", got)
	}
	c := &Conn{request: p}
	if ck, err := c.Cookie("theme"); err != nil || ck.Value != "dark" {
		t.Errorf("Cookie(theme) = %v, %v", ck, err)
	}
	if got := packedRequest("").header(); len(got) != 0 {
		t.Errorf("empty header = %v", got)
	}
}
