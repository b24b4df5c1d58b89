package client

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wsactor/wsactor/transport"
)

func TestBackoffCeilingDoublesUpToMax(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 10 * time.Second
	want := []time.Duration{
		100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, hi, hi,
	}
	for i, ceiling := range want {
		n := i + 1
		var asked int64
		largest := func(m int64) int64 { asked = m; return m - 1 }
		if got := backoff(n, lo, hi, largest); got != ceiling-1 || asked != int64(ceiling) {
			t.Errorf("attempt %d: delay %v drawn below %v, want below %v", n, got, time.Duration(asked), ceiling)
		}
		if got := backoff(n, lo, hi, func(int64) int64 { return 0 }); got != 0 {
			t.Errorf("attempt %d: smallest delay %v, want 0 (full jitter)", n, got)
		}
	}
	// Far attempts stay at the cap, without overflowing.
	for _, n := range []int{64, 1000, 1 << 30} {
		var asked int64
		backoff(n, lo, hi, func(m int64) int64 { asked = m; return 0 })
		if asked != int64(hi) {
			t.Errorf("attempt %d: ceiling %v", n, time.Duration(asked))
		}
	}
	var asked int64
	backoff(100, time.Second, time.Duration(1<<63-1), func(m int64) int64 { asked = m; return 0 })
	if asked != 1<<63-1 {
		t.Errorf("uncapped: ceiling %d", asked)
	}
}

func TestBackoffJitter(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 10 * time.Second
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 10; n++ {
		ceiling := min(lo<<(n-1), hi)
		least, most := ceiling, time.Duration(0)
		for range 1000 {
			d := backoff(n, lo, hi, r.Int64N)
			if d < 0 || d >= ceiling {
				t.Fatalf("attempt %d: delay %v outside [0, %v)", n, d, ceiling)
			}
			least, most = min(least, d), max(most, d)
		}
		// Spread over the whole range: clients dropped together come back apart.
		if least > ceiling/10 || most < ceiling*9/10 {
			t.Errorf("attempt %d: delays in [%v, %v] of [0, %v)", n, least, most, ceiling)
		}
	}
}

func TestEncodeEnvelope(t *testing.T) {
	type say struct {
		Text string `json:"text"`
	}
	type typed struct {
		Type string `json:"type"`
		Req  int    `json:"req"`
		N    int
	}
	var nilSay *say
	cases := []struct {
		typ, req string
		payload  any
		want     string
	}{
		{"say", "", say{Text: "hi"}, `{"type":"say","text":"hi"}`},
		{"say", "", nil, `{"type":"say"}`},
		{"say", "", nilSay, `{"type":"say"}`},
		{"say", "", map[string]any{}, `{"type":"say"}`},
		{"add", "c1.7", map[string]int{"B": 40, "A": 2}, `{"type":"add","req":"c1.7","A":2,"B":40}`},
		{"a<b", "", json.RawMessage(` {"z": [1, 2], "a": {"b": null}} `), `{"type":"a\u003cb","z":[1,2],"a":{"b":null}}`},
		// typ replaces "type" (in any case); Request's req replaces "req",
		// Send keeps the application's.
		{"t", "", typed{Type: "x", Req: 5, N: 1}, `{"type":"t","req":5,"N":1}`},
		{"t", "c1.8", typed{Type: "x", Req: 5, N: 1}, `{"type":"t","req":"c1.8","N":1}`},
		{"t", "c1.9", map[string]any{"TYPE": "x", "Req": 1, "n": 2}, `{"type":"t","req":"c1.9","n":2}`},
		{"t", "", json.RawMessage(`{"\u0074ype":"y","n":2}`), `{"type":"t","n":2}`}, // an escaped key
	}
	for _, tc := range cases {
		got, err := encodeEnvelope(tc.typ, tc.req, tc.payload)
		if err != nil || string(got) != tc.want {
			t.Errorf("encodeEnvelope(%q, %q, %#v) = %s, %v; want %s", tc.typ, tc.req, tc.payload, got, err, tc.want)
		}
	}
	for _, bad := range []any{"text", 42, []int{1}, json.RawMessage(`[]`), func() {}} {
		if got, err := encodeEnvelope("x", "", bad); err == nil {
			t.Errorf("encodeEnvelope accepted %#v: %s", bad, got)
		}
	}
	if _, err := encodeEnvelope("", "", nil); err == nil {
		t.Error("encodeEnvelope accepted an empty type")
	}
}

func TestNewMessage(t *testing.T) {
	cases := []struct {
		kind     websocket.MessageType
		data     string
		typ, req string
	}{
		{websocket.MessageText, `{"type":"said","text":"hi"}`, "said", ""},
		{websocket.MessageText, ` {"type":"reply","req":"c1.2","data":1}`, "reply", "c1.2"},
		{websocket.MessageText, `{"type":"error","code":"x","req":"c1.3"}`, "error", "c1.3"},
		{websocket.MessageText, `{"type":"reply","req":7,"data":1}`, "reply", ""}, // numbers are not Request's
		{websocket.MessageText, `{"type":"said","req":"c1.4"}`, "said", ""},       // not an answer
		{websocket.MessageText, `{"type":7}`, "", ""},
		{websocket.MessageText, `{"type":"x"`, "", ""},
		{websocket.MessageText, `hello`, "", ""},
		{websocket.MessageText, `["type"]`, "", ""},
		{websocket.MessageBinary, `{"type":"said"}`, "", ""},
	}
	for _, tc := range cases {
		m := newMessage(tc.kind, []byte(tc.data))
		if m.Type != tc.typ || m.req != tc.req || m.Kind != tc.kind || string(m.Data) != tc.data {
			t.Errorf("newMessage(%v, %s) = type %q req %q", tc.kind, tc.data, m.Type, m.req)
		}
	}
}

func TestHandshakeErrorFinal(t *testing.T) {
	for status, final := range map[int]bool{400: true, 401: true, 403: true, 404: true, 408: false, 426: true, 429: false, 500: false, 502: false, 503: false} {
		if got := (&HandshakeError{StatusCode: status}).final(); got != final {
			t.Errorf("HTTP %d: final %v", status, got)
		}
	}
}

func TestDefaultFinalClose(t *testing.T) {
	final := []websocket.StatusCode{1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 4000, 4999}
	retry := []websocket.StatusCode{1001, 1005, 1006, 1011, 1012, 1013, 1014, 1015, 2999, 5000}
	for _, code := range final {
		if !DefaultFinalClose(code, "") {
			t.Errorf("%d: not final", code)
		}
	}
	for _, code := range retry {
		if DefaultFinalClose(code, "") {
			t.Errorf("%d: final", code)
		}
	}
	if DefaultFinalClose(websocket.StatusTryAgainLater, transport.ReasonSlowConsumer) {
		t.Error("a slow consumer is not allowed to catch up")
	}
	if !DefaultFinalClose(websocket.StatusPolicyViolation, "forbidden") {
		t.Error("forbidden is not final")
	}
}
