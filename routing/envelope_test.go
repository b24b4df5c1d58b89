package routing

import (
	"encoding/json"
	"errors"
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
				t.Errorf("%s: want %s, got %v", tc.in, tc.code, err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case env.Type != tc.typ || string(env.Req) != tc.req:
			t.Errorf("%s: got %+v (req %s)", tc.in, env, env.Req)
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{`{"type":"a","req":1,"x":[1,2]}`, `{"type":"é"}`, `{}`, `[`, `{"req":"q"}`, "\xff", `{"type":"a","type":"b"}`} {
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
	})
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
