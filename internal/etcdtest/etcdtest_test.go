package etcdtest

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"testing"
)

func TestStartGetStopRestart(t *testing.T) {
	s := Start(t)
	ctx := t.Context()
	if !healthy(s.URL()) {
		t.Fatal("not healthy after Start")
	}
	for k, v := range map[string]string{"/a/1": "x", "/a/2": "y", "/ab": "z", "/b": "w"} {
		put(t, s, k, v)
	}
	kvs, err := s.Get(ctx, "/a/")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"/a/1": "x", "/a/2": "y"}; !maps.Equal(kvs, want) {
		t.Fatalf("Get /a/: %v, want %v", kvs, want)
	}
	s.Stop()
	if healthy(s.URL()) {
		t.Fatal("still answering after Stop")
	}
	if _, err := s.Get(ctx, "/"); err == nil {
		t.Fatal("Get succeeded after Stop")
	}
	s.Restart()
	if !healthy(s.URL()) {
		t.Fatal("not healthy after Restart")
	}
	if kvs, err := s.Get(ctx, "/"); err != nil || len(kvs) != 0 {
		t.Fatalf("after Restart: %v, %v; want empty", kvs, err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for prefix, want := range map[string]string{"/a": "/b", "a\xff": "b", "\xff\xff": "\x00"} {
		if got := string(prefixEnd(prefix)); got != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", prefix, got, want)
		}
	}
}

// put writes through the JSON gateway, as Get reads.
func put(t *testing.T, s *Server, key, value string) {
	t.Helper()
	body, _ := json.Marshal(map[string][]byte{"key": []byte(key), "value": []byte(value)})
	resp, err := http.Post(s.URL()+"/v3/kv/put", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("put %q: %s", key, resp.Status)
	}
}
