package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestDecodeEnvelope(t *testing.T) {
	for _, tc := range []struct {
		in, typ, req, code string
	}{
		{in: `{"type":"chat.say","text":"hi"}`, typ: "chat.say"},
		{in: ` {"type":"a","req":7}`, typ: "a", req: "7"},
		{in: `{"type":"a","req":"x-1"}`, typ: "a", req: `"x-1"`},
		{in: `{"type":"a","req":null}`, typ: "a"},
		{in: `{"type":"a","req":{}}`, code: CodeBadReq},
		{in: `{"type":"a","req":true}`, code: CodeBadReq},
		{in: `{"type":"a","req":[1]}`, code: CodeBadReq},
		// A request ID is a string of at most MaxReqLen bytes or a safe integer.
		{in: `{"type":"a","req":0}`, typ: "a", req: "0"},
		{in: `{"type":"a","req":-0}`, typ: "a", req: "-0"},
		{in: `{"type":"a","req":9007199254740991}`, typ: "a", req: "9007199254740991"},
		{in: `{"type":"a","req":-9007199254740991}`, typ: "a", req: "-9007199254740991"},
		{in: `{"type":"a","req":9007199254740992}`, code: CodeBadReq},
		{in: `{"type":"a","req":-9007199254740992}`, code: CodeBadReq},
		{in: `{"type":"a","req":00000000000000000000000001}`, code: CodeBadJSON}, // not JSON at all
		{in: `{"type":"a","req":1e400}`, code: CodeBadReq},
		{in: `{"type":"a","req":1E2}`, code: CodeBadReq},
		{in: `{"type":"a","req":1e2}`, code: CodeBadReq},
		{in: `{"type":"a","req":1.5}`, code: CodeBadReq},
		{in: `{"type":"a","req":7.0}`, code: CodeBadReq},
		{in: `{"type":"a","req":` + strings.Repeat("9", 5000) + `}`, code: CodeBadReq},
		{in: `{"type":"a","req":"` + strings.Repeat("r", MaxReqLen) + `"}`, typ: "a", req: `"` + strings.Repeat("r", MaxReqLen) + `"`},
		{in: `{"type":"a","req":"` + strings.Repeat("r", MaxReqLen+1) + `"}`, code: CodeBadReq},
		{in: `{"type":"a","req":"` + strings.Repeat("é", MaxReqLen/2) + `"}`, typ: "a", req: `"` + strings.Repeat("é", MaxReqLen/2) + `"`},
		{in: `{"type":"a","req":"` + strings.Repeat("é", MaxReqLen/2) + `x"}`, code: CodeBadReq}, // 65 bytes
		{in: `{"type":"a","req":"` + strings.Repeat(`\u0041`, MaxReqLen) + `"}`, typ: "a", req: `"` + strings.Repeat(`\u0041`, MaxReqLen) + `"`},
		{in: `{"type":"a","req":"` + strings.Repeat(`\u0041`, MaxReqLen+1) + `"}`, code: CodeBadReq},
		// Invalid UTF-8 decodes to U+FFFD, 3 bytes each: 30 raw bytes are 90.
		{in: `{"type":"a","req":"` + strings.Repeat("\xff", 30) + `"}`, code: CodeBadReq},
		{in: `{"text":"hi"}`, code: CodeMissingType},
		{in: `{"type":""}`, code: CodeMissingType},
		{in: `{"type":5}`, code: CodeMissingType},
		{in: `{"type":null}`, code: CodeMissingType},
		{in: `{"type":"` + strings.Repeat("a", MaxTypeLen+1) + `"}`, code: CodeMissingType},
		{in: `{"type":"a"`, code: CodeBadJSON},
		{in: `[1,2]`, code: CodeBadJSON},
		{in: `"type"`, code: CodeBadJSON},
		{in: ``, code: CodeBadJSON},
		{in: `{"type":"a"} trailing`, code: CodeBadJSON},
	} {
		env, err := DecodeEnvelope([]byte(tc.in))
		var e *Error
		switch {
		case tc.code != "":
			if !errors.As(err, &e) || e.Code != tc.code {
				t.Errorf("%.80s: want %s, got %v", tc.in, tc.code, err)
			}
			if tc.code == CodeBadReq && env.Req != nil {
				t.Errorf("%.80s: a bad \"req\" is returned for echoing: %s", tc.in, env.Req)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case env.Type != tc.typ || string(env.Req) != tc.req:
			t.Errorf("%s: got %+v (req %s)", tc.in, env, env.Req)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{`{"type":"a","req":1,"x":[1,2]}`, `{"type":"a","req":1e400}`, `{"type":"a","req":-9007199254740991}`, `{"type":"a","req":"q"}`, `{"type":"é"}`, `{}`, `[`, `{"req":"q"}`, "\xff", `{"type":"a","type":"b"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := DecodeEnvelope(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" || e.Message == "" {
				t.Fatalf("error is not a coded *Error: %v", err)
			}
			return
		}
		if env.Type == "" || len(env.Type) > MaxTypeLen {
			t.Fatalf("accepted type %q", env.Type)
		}
		if env.Req != nil && !reqFollowsRule(env.Req) {
			t.Fatalf("accepted req %s: not a string of at most %d bytes nor a safe integer", env.Req, MaxReqLen)
		}
	})
}

// reqFollowsRule is the rule for "req", written independently of DecodeEnvelope:
// a JSON string of at most MaxReqLen bytes, or an integer literal (no
// fraction, no exponent) that JavaScript represents exactly.
func reqFollowsRule(raw json.RawMessage) bool {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return false
	}
	switch v := v.(type) {
	case string:
		return len(v) <= MaxReqLen
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		return err == nil && n >= -(1<<53-1) && n <= 1<<53-1
	}
	return false
}

func FuzzDecodeEnvelopeNeverEchoesLongTypes(f *testing.F) {
	f.Add(strings.Repeat("x", MaxTypeLen+1))
	f.Fuzz(func(t *testing.T, typ string) {
		data, _ := json.Marshal(map[string]string{"type": typ})
		env, _ := DecodeEnvelope(data)
		if len(env.Type) > MaxTypeLen {
			t.Fatalf("returned a %d-byte type", len(env.Type))
		}
	})
}
