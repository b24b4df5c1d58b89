package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wsactor/wsactor/internal/redistest"
)

// env is a hermetic environment for load.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRepositoryClusterYAML(t *testing.T) {
	c, err := load("../cluster.yaml", env(), nil)
	if err != nil {
		t.Fatalf("../cluster.yaml: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("cluster.yaml should restate the defaults:\n got %+v\nwant %+v", c, Default())
	}
	// Every field is written out, so the file documents all of them.
	data, err := os.ReadFile("../cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(prefix, n.Content[i].Value)
			if v := n.Content[i+1]; v.Kind == yaml.MappingNode {
				walk(v, p)
			} else {
				present[p] = true
			}
		}
	}
	walk(doc.Content[0], "")
	def := Default()
	for _, l := range leavesOf(&def) {
		if !present[l.path] {
			t.Errorf("cluster.yaml does not document %s", l.path)
		}
	}
}

func TestLoadErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top-level field", "cluster:\n  name: a\nredis_addr: x\n",
			[]string{"c.yaml:3: redis_addr: unknown field", "the top level has cluster, node"}},
		{"unknown nested field", "redis:\n  adr: 127.0.0.1:6379\n",
			[]string{"c.yaml:2: redis.adr: unknown field", "redis has addr, username"}},
		{"unknown deep field", "redis:\n  tls:\n    cafile: x\n", []string{"c.yaml:3: redis.tls.cafile: unknown field"}},
		{"string for an int", "node:\n  port: abc\n", []string{`c.yaml:2: node.port: "abc" is not an integer`}},
		{"float for an int", "redis:\n  db: 1.5\n", []string{`redis.db: "1.5" is not an integer`}},
		{"mapping for a value", "node:\n  host: {a: 1}\n", []string{"node.host: must be a single value"}},
		{"value for a section", "redis: localhost\n", []string{"c.yaml:1: redis: must be a mapping of addr"}},
		{"null int", "node:\n  port:\n", []string{"node.port: has no value"}},
		{"bad duration", "membership:\n  heartbeat_interval: 1 sec\n",
			[]string{`c.yaml:2: membership.heartbeat_interval: "1 sec" is not a duration`}},
		{"duration without unit", "timeouts:\n  request: 5\n", []string{`timeouts.request: "5" is not a duration`}},
		{"bad bool", "redis:\n  tls:\n    enabled: maybe\n", []string{`redis.tls.enabled: "maybe" is not a boolean`}},
		{"value for a list", "membership:\n  etcd:\n    endpoints: a:1\n", []string{"membership.etcd.endpoints: must be a list"}},
		{"key set twice", "node:\n  port: 1\n  port: 2\n", []string{"c.yaml:3: node.port: set twice (first on line 2)"}},
		{"two documents", "node:\n  port: 1\n---\nnode:\n  port: 2\n", []string{"c.yaml:", "second YAML document"}},
		{"YAML syntax", "node:\n  port: 1\n port: 2\n", []string{"c.yaml: yaml: line"}},
		{"top level not a mapping", "- a\n- b\n", []string{"must be a mapping of cluster, node"}},

		{"bad port", "node:\n  port: 70000\n", []string{"c.yaml:2: node.port: 70000 is not a port"}},
		{"negative port", "node:\n  port: -1\n", []string{"node.port: -1 is not a port"}},
		{"port in host", "node:\n  host: 127.0.0.1:7000\n", []string{`node.host: "127.0.0.1:7000" is not a host: the port goes in node.port`}},
		{"bad host", "node:\n  host: a b\n", []string{`node.host: "a b" is not an IP address or host name`}},
		{"bad redis address", "redis:\n  addr: nohost\n", []string{`c.yaml:2: redis.addr: "nohost" is not host:port`}},
		{"redis address without port", "redis:\n  addr: 'localhost:'\n", []string{`redis.addr: "localhost:": "" is not a port`}},
		{"missing redis address", "redis:\n  addr: \"\"\n", []string{`redis.addr: "" is not host:port`}},
		{"bad advertised address", "node:\n  advertised_address: 10.0.0.1\n", []string{`node.advertised_address: "10.0.0.1" is not host:port`}},
		{"wildcard advertised", "node:\n  advertised_address: 0.0.0.0:7000\n", []string{"node.advertised_address: \"0.0.0.0:7000\" cannot be dialled"}},
		{"wildcard host alone", "node:\n  host: 0.0.0.0\n", []string{`node.advertised_address: required when node.host is "0.0.0.0"`}},
		{"ttl equal to heartbeat", "membership:\n  heartbeat_interval: 1s\n  member_ttl: 1s\n",
			[]string{"c.yaml:3: membership.member_ttl: 1s must be greater than membership.heartbeat_interval (1s)"}},
		{"heartbeat too short", "membership:\n  heartbeat_interval: 1ms\n", []string{"membership.heartbeat_interval: 1ms is too short"}},
		{"unknown provider", "membership:\n  provider: zookeeper\n",
			[]string{`membership.provider: "zookeeper" is not one of redis, automanaged, consul, etcd, k8s`}},
		{"automanaged without hosts", "membership:\n  provider: automanaged\n  automanaged:\n    hosts: []\n",
			[]string{"membership.automanaged.hosts: empty"}},
		{"bad etcd endpoint", "membership:\n  provider: etcd\n  etcd:\n    endpoints: [\"http://127.0.0.1:2379\", \"x\"]\n",
			[]string{`membership.etcd.endpoints: "x" is not host:port`}},
		{"bad cluster name", "cluster:\n  name: \"my cluster\"\n", []string{`c.yaml:2: cluster.name: "my cluster" is not a name`}},
		{"empty cluster name", "cluster:\n  name:\n", []string{`cluster.name: "" is not a name`}},
		{"zero queue size", "remote:\n  endpoint_writer_queue_size: 0\n", []string{"remote.endpoint_writer_queue_size: 0 is below 1"}},
		{"zero retries", "remote:\n  max_retry_count: 0\n", []string{"remote.max_retry_count: 0 is below 1"}},
		{"negative timeout", "timeouts:\n  shutdown: -1s\n", []string{"timeouts.shutdown: -1s must be positive"}},
		{"remote tls without files", "remote:\n  tls:\n    enabled: true\n",
			[]string{"remote.tls.cert_file: required", "remote.tls.key_file: required", "remote.tls.ca_file: required when remote.tls.require_client_cert"}},
		{"redis tls cert without key", "redis:\n  tls:\n    enabled: true\n    cert_file: /etc/hostname\n",
			[]string{"redis.tls.key_file: required with redis.tls.cert_file"}},
		{"nonexistent tls files", "remote:\n  tls:\n    enabled: true\n    cert_file: /nonexistent/node.pem\n    key_file: /nonexistent/node.key\n    ca_file: /nonexistent/ca.pem\n",
			[]string{`c.yaml:4: remote.tls.cert_file: cannot read "/nonexistent/node.pem": no such file`,
				`c.yaml:5: remote.tls.key_file: cannot read`, `c.yaml:6: remote.tls.ca_file: cannot read`}},
		{"directory as tls file", "redis:\n  tls:\n    enabled: true\n    ca_file: /\n", []string{`redis.tls.ca_file: "/" is a directory`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "c.yaml", tt.yaml)
			_, err := load(path, env(), nil)
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Default()
	c.Node.Port = 70000
	c.Redis.Addr = "nohost"
	c.Membership.Provider = "zookeeper"
	c.Remote.LanePort = -2
	err := c.Validate()
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		fields = append(fields, fe.Field)
	}
	want := []string{"node.port", "membership.provider", "redis.addr", "remote.lane_port"}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %v, want %v (error: %v)", fields, want, err)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing file", func(t *testing.T) {
		_, err := load(filepath.Join(dir, "nope.yaml"), env(), nil)
		if err == nil || !strings.Contains(err.Error(), "nope.yaml") || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := load(dir, env(), nil); err == nil {
			t.Error("no error loading a directory")
		}
	})
	for _, content := range []string{"", "# only comments\n", "---\n", "redis:\n"} {
		c, err := load(writeFile(t, dir, "empty.yaml", content), env(), nil)
		if err != nil || !reflect.DeepEqual(c, Default()) {
			t.Errorf("%q: got %+v, %v; want the defaults", content, c, err)
		}
	}
	t.Run("no file", func(t *testing.T) {
		c, err := load("", env("WSACTOR_NODE_PORT", "7101"), nil)
		if err != nil || c.Node.Port != 7101 {
			t.Errorf("got %d, %v", c.Node.Port, err)
		}
	})
	t.Run("values, anchors, lists", func(t *testing.T) {
		c, err := load(writeFile(t, dir, "v.yaml", `
cluster: {name: prod-eu.1}
node:
  host: &h 10.0.0.5
  port: 7101
membership:
  provider: etcd
  member_ttl: 2500ms
  etcd:
    endpoints: [10.0.0.1:2379, "https://etcd.internal:2379"]
redis:
  addr: redis.internal:6380
  password: 012345
  key_prefix: ""
`), env(), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := Default()
		want.Cluster.Name = "prod-eu.1"
		want.Node.Host, want.Node.Port = "10.0.0.5", 7101
		want.Membership.Provider, want.Membership.MemberTTL = "etcd", 2500*time.Millisecond
		want.Membership.Etcd.Endpoints = []string{"10.0.0.1:2379", "https://etcd.internal:2379"}
		want.Redis.Addr, want.Redis.Password, want.Redis.KeyPrefix = "redis.internal:6380", "012345", ""
		if !reflect.DeepEqual(c, want) {
			t.Errorf("got  %+v\nwant %+v", c, want)
		}
		if got := c.AdvertisedAddress(); got != "10.0.0.5:7101" {
			t.Errorf("AdvertisedAddress = %q", got)
		}
	})
}

func TestEnvOverrides(t *testing.T) {
	path := writeFile(t, t.TempDir(), "c.yaml", "cluster:\n  name: fromfile\nnode:\n  port: 7000\n")
	c, err := load(path, env(
		"WSACTOR_CLUSTER_NAME", "fromenv",
		"WSACTOR_NODE_HOST", "10.1.2.3",
		"WSACTOR_NODE_PORT", "7101",
		"WSACTOR_REDIS_ADDR", "redis.internal:6380",
		"WSACTOR_REDIS_TLS_ENABLED", "true",
		"WSACTOR_REDIS_TLS_INSECURE_SKIP_VERIFY", "1",
		"WSACTOR_MEMBERSHIP_HEARTBEAT_INTERVAL", "250ms",
		"WSACTOR_REDIS_DB", "3",
		"WSACTOR_MEMBERSHIP_AUTOMANAGED_HOSTS", "a:1, b:2,",
		"WSACTOR_REDIS_PASSWORD", "",
		"WSACTOR_REQUIRE_REDIS", "1", // another WSACTOR_ variable: ignored
	), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Cluster.Name = "fromenv"
	want.Node.Host, want.Node.Port = "10.1.2.3", 7101
	want.Redis.Addr, want.Redis.DB = "redis.internal:6380", 3
	want.Redis.TLS.Enabled, want.Redis.TLS.InsecureSkipVerify = true, true
	want.Membership.HeartbeatInterval = 250 * time.Millisecond
	want.Membership.Automanaged.Hosts = []string{"a:1", "b:2"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestBadEnvNamesTheVariable(t *testing.T) {
	for _, tt := range []struct{ name, value, want string }{
		{"WSACTOR_NODE_PORT", "abc", `WSACTOR_NODE_PORT: node.port: "abc" is not an integer`},
		{"WSACTOR_NODE_PORT", "70000", `WSACTOR_NODE_PORT: node.port: 70000 is not a port`},
		{"WSACTOR_REDIS_TLS_ENABLED", "yes please", `WSACTOR_REDIS_TLS_ENABLED: redis.tls.enabled: "yes please" is not a boolean`},
		{"WSACTOR_MEMBERSHIP_MEMBER_TTL", "3", `WSACTOR_MEMBERSHIP_MEMBER_TTL: membership.member_ttl: "3" is not a duration`},
		{"WSACTOR_REDIS_ADDR", "", `WSACTOR_REDIS_ADDR: redis.addr: "" is not host:port`},
	} {
		_, err := load("", env(tt.name, tt.value), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%q: err = %v, want %q", tt.name, tt.value, err, tt.want)
		}
	}
	// ApplyEnv alone, as the lead's code may use it.
	c := Default()
	err := c.ApplyEnv(env("WSACTOR_REDIS_DB", "x"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "redis.db" || fe.Source != "WSACTOR_REDIS_DB" {
		t.Errorf("ApplyEnv: %#v", err)
	}
}

func TestFlagsOverrideEnv(t *testing.T) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "the example's own flag")
	f := RegisterFlags(fs)
	if err := fs.Parse([]string{"-addr", ":8081", "-node-port", "7102", "-redis-tls-enabled", "-redis-tls-insecure-skip-verify=true",
		"-membership-member-ttl", "5s", "-membership-etcd-endpoints", "x:1,y:2", "-redis-key-prefix", "app:"}); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, t.TempDir(), "c.yaml", "node:\n  port: 7000\n")
	c, err := load(path, env("WSACTOR_NODE_PORT", "7101", "WSACTOR_CLUSTER_NAME", "fromenv"), f)
	if err != nil {
		t.Fatal(err)
	}
	if *addr != ":8081" || c.Node.Port != 7102 || c.Cluster.Name != "fromenv" || !c.Redis.TLS.Enabled ||
		c.Membership.MemberTTL != 5*time.Second || c.Redis.KeyPrefix != "app:" ||
		!reflect.DeepEqual(c.Membership.Etcd.Endpoints, []string{"x:1", "y:2"}) {
		t.Errorf("got %+v (addr %q)", c, *addr)
	}

	// A flag's value is checked when parsed, naming the flag and the field;
	// a valid value out of range fails validation, naming the flag.
	fs = flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	RegisterFlags(fs)
	err = fs.Parse([]string{"-node-port", "abc"})
	if err == nil || !strings.Contains(err.Error(), "-node-port") || !strings.Contains(err.Error(), `node.port: "abc" is not an integer`) {
		t.Errorf("bad flag: %v", err)
	}
	fs = flag.NewFlagSet("node", flag.ContinueOnError)
	f = RegisterFlags(fs)
	if err := fs.Parse([]string{"-node-port", "70000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := load("", env(), f); err == nil || !strings.Contains(err.Error(), "-node-port: node.port: 70000 is not a port") {
		t.Errorf("out of range flag: %v", err)
	}
}

func TestFlagHelpHidesSecrets(t *testing.T) {
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	RegisterFlags(fs)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.PrintDefaults()
	for _, want := range []string{"-redis-addr value", "(WSACTOR_REDIS_ADDR)", "(default 127.0.0.1:6379)", "-redis-tls-enabled\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
	for _, unwanted := range []string{"(default false)", "(default 0)"} {
		if strings.Contains(out.String(), unwanted) {
			t.Errorf("usage has %q", unwanted)
		}
	}
}

func TestFieldNamesAreUniqueAndDocumented(t *testing.T) {
	def := Default()
	envs, flags := map[string]string{}, map[string]string{}
	for _, l := range leavesOf(&def) {
		if prev, dup := envs[EnvName(l.path)]; dup {
			t.Errorf("%s and %s share %s", prev, l.path, EnvName(l.path))
		}
		if prev, dup := flags[FlagName(l.path)]; dup {
			t.Errorf("%s and %s share -%s", prev, l.path, FlagName(l.path))
		}
		envs[EnvName(l.path)], flags[FlagName(l.path)] = l.path, l.path
		if l.field.Tag.Get("help") == "" {
			t.Errorf("%s has no help tag", l.path)
		}
		setString(reflect.New(l.v.Type()).Elem(), "1") // panics on an unsupported type
	}
	for path, want := range map[string]string{"node.port": "WSACTOR_NODE_PORT", "redis.tls.ca_file": "WSACTOR_REDIS_TLS_CA_FILE"} {
		if got := EnvName(path); got != want {
			t.Errorf("EnvName(%q) = %q", path, got)
		}
	}
	if got := FlagName("redis.tls.ca_file"); got != "redis-tls-ca-file" {
		t.Errorf("FlagName = %q", got)
	}
}

func TestAddresses(t *testing.T) {
	for _, tt := range []struct {
		host, adv string
		port      int
		want      string
		bindHost  string
	}{
		{"127.0.0.1", "", 0, "", "127.0.0.1"},
		{"127.0.0.1", "", 7101, "127.0.0.1:7101", "127.0.0.1"},
		{"0.0.0.0", "10.0.0.5:7101", 7101, "10.0.0.5:7101", "0.0.0.0"},
		{"::1", "", 7101, "[::1]:7101", "[::1]"},
		{"node1.internal", "", 7101, "node1.internal:7101", "node1.internal"},
	} {
		c := Default()
		c.Node.Host, c.Node.Port, c.Node.AdvertisedAddress = tt.host, tt.port, tt.adv
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c.Node, err)
		}
		if got := c.AdvertisedAddress(); got != tt.want {
			t.Errorf("%+v: AdvertisedAddress = %q, want %q", c.Node, got, tt.want)
		}
		if h, p := c.RemoteBind(); h != tt.bindHost || p != tt.port {
			t.Errorf("%+v: RemoteBind = %q %d", c.Node, h, p)
		}
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	c := Default()
	c.Redis.Password = "hunter2"
	var out bytes.Buffer
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "cluster", c)
	if s := out.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "cluster.redis.addr=127.0.0.1:6379") ||
		!strings.Contains(s, "cluster.redis.password=(redacted)") {
		t.Errorf("log line: %s", s)
	}
}

// pki writes a CA and a node certificate (for 127.0.0.1 and node.wsactor,
// usable as server and client) into dir.
func pki(t testing.TB, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nodeTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"node.wsactor"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, &nodeKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(nodeKey)
	pemOf := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }
	return writeFile(t, dir, "ca.pem", pemOf("CERTIFICATE", caDER)),
		writeFile(t, dir, "node.pem", pemOf("CERTIFICATE", nodeDER)),
		writeFile(t, dir, "node.key", pemOf("EC PRIVATE KEY", keyDER))
}

func TestRemoteTLS(t *testing.T) {
	dir := t.TempDir()
	pki(t, dir)
	// Relative paths in the file are relative to the file.
	path := writeFile(t, dir, "c.yaml", "remote:\n  tls:\n    enabled: true\n    cert_file: node.pem\n    key_file: node.key\n    ca_file: ca.pem\n    server_name: node.wsactor\n")
	c, err := load(path, env(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Remote.TLS.CAFile != filepath.Join(dir, "ca.pem") {
		t.Errorf("ca_file = %q", c.Remote.TLS.CAFile)
	}
	server, client, err := c.RemoteTLS()
	if err != nil {
		t.Fatal(err)
	}
	if server.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth = %v", server.ClientAuth)
	}
	if err := handshake(server, client); err != nil {
		t.Errorf("mutual TLS handshake: %v", err)
	}
	anonymous := client.Clone()
	anonymous.Certificates = nil
	if err := handshake(server, anonymous); err == nil {
		t.Error("a peer without a client certificate was accepted")
	}

	// Files that exist but hold no PEM are reported by field.
	junk := writeFile(t, dir, "junk.pem", "not a certificate")
	c.Remote.TLS.CAFile = junk
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `remote.tls.ca_file: "`+junk+`" holds no PEM certificate`) {
		t.Errorf("junk CA: %v", err)
	}
	c.Remote.TLS.CAFile, c.Remote.TLS.KeyFile = filepath.Join(dir, "ca.pem"), junk
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "remote.tls.cert_file: cannot load") {
		t.Errorf("junk key: %v", err)
	}
	if s, cl, err := Default().RemoteTLS(); s != nil || cl != nil || err != nil {
		t.Errorf("disabled RemoteTLS = %v %v %v", s, cl, err)
	}
}

// handshake runs a TLS handshake over loopback TCP (buffered, unlike
// net.Pipe, so both sides can write at once) and one byte each way.
func handshake(server, client *tls.Config) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(conn, server)
		b := make([]byte, 1)
		if _, err = s.Read(b); err == nil { // TLS 1.3 reports a rejected client certificate after the handshake
			_, err = s.Write(b)
		}
		done <- err
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cl := tls.Client(conn, client)
	if _, err = cl.Write([]byte{1}); err == nil {
		_, err = cl.Read(make([]byte, 1))
	}
	if serr := <-done; serr != nil {
		return serr
	}
	return err
}

func TestPingRedis(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := Default()
	c.Redis.Addr = s.Addr()
	if err := c.PingRedis(ctx); err != nil {
		t.Fatalf("PingRedis(%s): %v", s.Addr(), err)
	}

	wrong := func(field string, change func(*Config)) {
		t.Helper()
		c := c
		change(&c)
		err := c.PingRedis(ctx)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field || !strings.Contains(err.Error(), field+": ") {
			t.Errorf("want an error naming %s, got %v", field, err)
		}
		t.Logf("%s: %v", field, err)
	}
	wrong("redis.password", func(c *Config) { c.Redis.Username, c.Redis.Password = "nobody", "secret" })
	wrong("redis.db", func(c *Config) { c.Redis.DB = 1000 })
	wrong("redis.tls", func(c *Config) { c.Redis.TLS.Enabled, c.Redis.TLS.InsecureSkipVerify = true, true })
}

func TestPingRedisUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	c := Default()
	c.Redis.Addr = closed
	start := time.Now()
	err = c.PingRedis(context.Background())
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "redis.addr" || !strings.Contains(err.Error(), "redis.addr: cannot reach Redis at "+closed) {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > c.Redis.DialTimeout+c.Redis.ReadTimeout+c.Redis.WriteTimeout+time.Second {
		t.Errorf("took %v", d)
	}
	// A black-holed address is bounded by the dial timeout.
	c.Redis.Addr, c.Redis.DialTimeout = "10.255.255.1:6379", 200*time.Millisecond
	start = time.Now()
	if err := c.PingRedis(context.Background()); err == nil || !strings.Contains(err.Error(), "redis.addr") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("black hole took %v", d)
	}
}
