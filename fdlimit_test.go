package wsactor

import (
	"math"
	"testing"
)

func TestMaxConnectionsFor(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		want  int
	}{
		{20_000, 18_000},   // a tenth in reserve
		{1 << 20, 943_719}, // 1,048,576 - 104,857
		{4096, 3687},       // 409
		{2048, 1792},       // 256: the reserve's floor
		{1024, 768},
		{512, 256}, // the 512 descriptors: 256 in reserve
		{300, 150}, // at most half in reserve
		{2, 1},
		{0, 1},                          // nonsense, but a cap that still lets one in
		{math.MaxUint64, math.MaxInt32}, // RLIM_INFINITY: a cap that never binds
	} {
		if got := maxConnectionsFor(tc.limit); got != tc.want {
			t.Errorf("maxConnectionsFor(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

func TestMaxConnectionsOption(t *testing.T) {
	if got, want := (Options{}).withDefaults().MaxConnections, DefaultMaxConnections(); got != want {
		t.Errorf("Options{}.MaxConnections = %d, want DefaultMaxConnections() = %d", got, want)
	}
	if got := (Options{MaxConnections: -1}).withDefaults().MaxConnections; got != -1 {
		t.Errorf("MaxConnections -1 (no cap) became %d", got)
	}
	if got := (Options{MaxConnections: 7}).withDefaults().MaxConnections; got != 7 {
		t.Errorf("MaxConnections 7 became %d", got)
	}
}

func TestHTTPOptionsDefaults(t *testing.T) {
	o := (Options{}).withDefaults().HTTP
	want := HTTPOptions{ReadTimeout: DefaultHTTPReadTimeout, IdleTimeout: DefaultHTTPIdleTimeout,
		MaxHeaderBytes: DefaultHTTPMaxHeaderBytes, MaxBodyBytes: DefaultHTTPMaxBodyBytes}
	if o != want {
		t.Errorf("defaults %+v, want %+v", o, want)
	}
	o = (Options{HandshakeTimeout: 5e9, HTTP: HTTPOptions{ReadTimeout: 1e9, IdleTimeout: -1, MaxBodyBytes: -1}}).withDefaults().HTTP
	if o.ReadTimeout != 5e9 {
		t.Errorf("a ReadTimeout below HandshakeTimeout became %v, want HandshakeTimeout", o.ReadTimeout)
	}
	if o.IdleTimeout != math.MaxInt64 || o.MaxBodyBytes != -1 {
		t.Errorf("negative IdleTimeout and MaxBodyBytes (none) became %v and %d", o.IdleTimeout, o.MaxBodyBytes)
	}
	if o := (Options{HTTP: HTTPOptions{ReadTimeout: -1}}).withDefaults().HTTP; o.ReadTimeout != 0 {
		t.Errorf("a negative ReadTimeout (none) became %v, want 0 (http.Server's none)", o.ReadTimeout)
	}
}
