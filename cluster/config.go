package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"
)

// Membership providers accepted by membership.provider. Redis is wsactor's
// own; the others are protoactor-go's, for users who already run them.
const (
	ProviderRedis       = "redis"
	ProviderAutomanaged = "automanaged"
	ProviderConsul      = "consul"
	ProviderEtcd        = "etcd"
	ProviderK8s         = "k8s"
)

var providers = []string{ProviderRedis, ProviderAutomanaged, ProviderConsul, ProviderEtcd, ProviderK8s}

// Config is the configuration of one cluster node, as written in
// cluster.yaml. Each field's YAML path (redis.tls.ca_file) also names its
// environment variable (WSACTOR_REDIS_TLS_CA_FILE, see EnvName) and its flag
// (-redis-tls-ca-file, see FlagName). cluster.yaml documents every field and
// its default; the help tags are the flags' usage text.
type Config struct {
	Cluster    ClusterSection    `yaml:"cluster"`
	Node       NodeSection       `yaml:"node"`
	Membership MembershipSection `yaml:"membership"`
	Redis      RedisSection      `yaml:"redis"`
	Remote     RemoteSection     `yaml:"remote"`
	Timeouts   TimeoutsSection   `yaml:"timeouts"`
}

// ClusterSection names the cluster.
type ClusterSection struct {
	Name string `yaml:"name" help:"cluster name: nodes with the same name and Redis form one cluster"`
}

// NodeSection is this node's remote (gRPC) endpoint, the one other nodes dial.
type NodeSection struct {
	Host              string `yaml:"host" help:"interface the remote endpoint binds to (keep it on a private network)"`
	Port              int    `yaml:"port" help:"port of the remote endpoint; 0 picks a free port"`
	AdvertisedAddress string `yaml:"advertised_address" help:"host:port other nodes dial; empty means the bound host and port"`
}

// MembershipSection chooses how nodes find each other and notice departures.
type MembershipSection struct {
	Provider          string             `yaml:"provider" help:"membership provider: redis, automanaged, consul, etcd or k8s"`
	HeartbeatInterval time.Duration      `yaml:"heartbeat_interval" help:"how often a node renews its membership"`
	MemberTTL         time.Duration      `yaml:"member_ttl" help:"a node that has not renewed for this long is removed"`
	Automanaged       AutomanagedSection `yaml:"automanaged"`
	Consul            ConsulSection      `yaml:"consul"`
	Etcd              EtcdSection        `yaml:"etcd"`
}

// AutomanagedSection configures protoactor's automanaged provider.
type AutomanagedSection struct {
	Port  int      `yaml:"port" help:"automanaged: HTTP port this node serves its status on (binds 0.0.0.0)"`
	Hosts []string `yaml:"hosts" help:"automanaged: host:port of every node's status port, comma-separated"`
}

// ConsulSection configures protoactor's Consul provider.
type ConsulSection struct {
	Address string `yaml:"address" help:"consul: agent host:port"`
	Token   string `yaml:"token" secret:"true" help:"consul: ACL token"`
}

// EtcdSection configures protoactor's etcd provider.
type EtcdSection struct {
	Endpoints   []string      `yaml:"endpoints" help:"etcd: endpoints (host:port or URL), comma-separated"`
	BaseKey     string        `yaml:"base_key" help:"etcd: key under which members register"`
	DialTimeout time.Duration `yaml:"dial_timeout" help:"etcd: connect timeout"`
}

// RedisSection is the Redis server holding membership and the directory.
type RedisSection struct {
	Addr         string        `yaml:"addr" help:"Redis host:port"`
	Username     string        `yaml:"username" help:"Redis ACL user name (empty: the default user)"`
	Password     string        `yaml:"password" secret:"true" help:"Redis password (prefer the environment variable)"`
	DB           int           `yaml:"db" help:"Redis database number"`
	KeyPrefix    string        `yaml:"key_prefix" help:"prefix of every Redis key and channel wsactor uses"`
	TLS          RedisTLS      `yaml:"tls"`
	DialTimeout  time.Duration `yaml:"dial_timeout" help:"Redis connect timeout, TLS handshake included"`
	ReadTimeout  time.Duration `yaml:"read_timeout" help:"Redis per-command read timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout" help:"Redis per-command write timeout"`
}

// RedisTLS is TLS towards Redis.
type RedisTLS struct {
	Enabled            bool   `yaml:"enabled" help:"connect to Redis over TLS"`
	CAFile             string `yaml:"ca_file" file:"true" help:"PEM CA bundle that signed the Redis certificate (empty: system roots)"`
	CertFile           string `yaml:"cert_file" file:"true" help:"PEM client certificate, if Redis asks for one"`
	KeyFile            string `yaml:"key_file" file:"true" help:"PEM private key of cert_file"`
	ServerName         string `yaml:"server_name" help:"name expected in the Redis certificate (empty: the host of redis.addr)"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" help:"do not verify the Redis certificate (tests only)"`
}

// RemoteSection tunes protoactor's remote transport between nodes.
type RemoteSection struct {
	EndpointWriterQueueSize int       `yaml:"endpoint_writer_queue_size" help:"initial capacity of the outbound queue to each peer (it grows when full)"`
	EndpointWriterBatchSize int       `yaml:"endpoint_writer_batch_size" help:"most messages sent to a peer in one gRPC batch"`
	MaxRetryCount           int       `yaml:"max_retry_count" help:"connection attempts to a peer (2s apart) before its queued messages are dead-lettered"`
	TLS                     RemoteTLS `yaml:"tls"`
}

// RemoteTLS is TLS (and, with RequireClientCert, mutual authentication)
// between nodes. Every node presents the same kind of certificate as server
// and as client.
type RemoteTLS struct {
	Enabled            bool   `yaml:"enabled" help:"encrypt node-to-node traffic with TLS"`
	CertFile           string `yaml:"cert_file" file:"true" help:"PEM certificate of this node, presented to peers"`
	KeyFile            string `yaml:"key_file" file:"true" help:"PEM private key of cert_file"`
	CAFile             string `yaml:"ca_file" file:"true" help:"PEM CA bundle that signed the nodes' certificates (empty: system roots)"`
	ServerName         string `yaml:"server_name" help:"name expected in peers' certificates (empty: the host dialled)"`
	RequireClientCert  bool   `yaml:"require_client_cert" help:"accept only peers whose client certificate ca_file signed"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" help:"do not verify peers' certificates (tests only)"`
}

// TimeoutsSection bounds the node's cross-node operations.
type TimeoutsSection struct {
	Request  time.Duration `yaml:"request" help:"timeout of a request to an actor on another node"`
	Shutdown time.Duration `yaml:"shutdown" help:"how long a graceful leave may take"`
}

// Default is the configuration cluster.yaml spells out: a node on 127.0.0.1
// with a free port, Redis on 127.0.0.1:6379.
func Default() Config {
	return Config{
		Cluster: ClusterSection{Name: "wsactor"},
		Node:    NodeSection{Host: "127.0.0.1"},
		Membership: MembershipSection{
			Provider:          ProviderRedis,
			HeartbeatInterval: time.Second,
			MemberTTL:         3 * time.Second,
			Automanaged:       AutomanagedSection{Port: 6330, Hosts: []string{"127.0.0.1:6330"}},
			Consul:            ConsulSection{Address: "127.0.0.1:8500"},
			Etcd:              EtcdSection{Endpoints: []string{"127.0.0.1:2379"}, BaseKey: "/protoactor", DialTimeout: 5 * time.Second},
		},
		Redis: RedisSection{
			Addr:         "127.0.0.1:6379",
			KeyPrefix:    "wsactor:",
			DialTimeout:  time.Second,
			ReadTimeout:  500 * time.Millisecond,
			WriteTimeout: 500 * time.Millisecond,
		},
		Remote: RemoteSection{
			EndpointWriterQueueSize: 4096,
			EndpointWriterBatchSize: 1000,
			MaxRetryCount:           3,
			TLS:                     RemoteTLS{RequireClientCert: true},
		},
		Timeouts: TimeoutsSection{Request: 5 * time.Second, Shutdown: 10 * time.Second},
	}
}

// FieldError is a problem with one field. Load, ApplyEnv, Flags.Apply,
// Validate and PingRedis return them (joined with errors.Join when there are
// several), so a caller can find the field with errors.As.
type FieldError struct {
	Field  string // YAML path: "redis.addr"
	Source string // where the value came from: "cluster.yaml:12", "WSACTOR_REDIS_ADDR", "-redis-addr"; empty for a default
	Err    error
}

// Error names the source, the field and the problem.
func (e *FieldError) Error() string {
	if e.Source != "" {
		return e.Source + ": " + e.Field + ": " + e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

// Unwrap returns the underlying problem.
func (e *FieldError) Unwrap() error { return e.Err }

// EnvName is the environment variable that overrides the field at path:
// "redis.tls.enabled" → "WSACTOR_REDIS_TLS_ENABLED".
func EnvName(path string) string {
	return "WSACTOR_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// FlagName is the flag (without the dash) that overrides the field at path:
// "redis.key_prefix" → "redis-key-prefix".
func FlagName(path string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(path)
}

// Load reads the configuration of a node: Default, then the YAML file at path
// (skipped when path is ""), then the environment, then validation. Use
// LoadWithFlags to let flags override the environment.
func Load(path string) (Config, error) { return load(path, os.LookupEnv, nil) }

// LoadWithFlags is Load followed by the flags the user set on the command
// line, before validation: defaults < file < environment < flags.
//
//	configPath := flag.String("config", "", "cluster.yaml of this node")
//	clusterFlags := cluster.RegisterFlags(flag.CommandLine)
//	flag.Parse()
//	cfg, err := cluster.LoadWithFlags(*configPath, clusterFlags)
func LoadWithFlags(path string, f *Flags) (Config, error) { return load(path, os.LookupEnv, f) }

func load(path string, lookupEnv func(string) (string, bool), f *Flags) (Config, error) {
	c := Default()
	origins := map[string]string{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("cluster config: %w", err)
		}
		if err := c.decodeYAML(path, data, origins); err != nil {
			return Config{}, err
		}
	}
	if lookupEnv != nil {
		if err := c.applyEnv(lookupEnv, origins); err != nil {
			return Config{}, err
		}
	}
	if f != nil {
		if err := f.apply(&c, origins); err != nil {
			return Config{}, err
		}
	}
	problems := c.problems()
	for _, p := range problems {
		p.Source = origins[p.Field]
	}
	if err := joinFieldErrors(problems); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decodeYAML walks the YAML tree beside the struct rather than calling
// yaml.Unmarshal, so that every error names the full path of the field and
// its line, and all of them are reported at once.
func (c *Config) decodeYAML(path string, data []byte, origins map[string]string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil // an empty file: the defaults
	} else if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fmt.Errorf("%s:%d: a second YAML document; the file configures one node and holds one document", path, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	d := &yamlDecoder{file: path, origins: origins}
	d.section(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	if err := joinFieldErrors(d.errs); err != nil {
		return err
	}
	// Files named in the file are relative to it, as in most servers'
	// configuration; from the environment or flags, to the working directory.
	for _, l := range leavesOf(c) {
		if l.field.Tag.Get("file") == "true" && strings.HasPrefix(origins[l.path], path+":") {
			if p := l.v.String(); p != "" && !filepath.IsAbs(p) {
				l.v.SetString(filepath.Join(filepath.Dir(path), p))
			}
		}
	}
	return nil
}

type yamlDecoder struct {
	file    string
	origins map[string]string
	errs    []*FieldError
}

func (d *yamlDecoder) fail(n *yaml.Node, path string, err error) {
	d.errs = append(d.errs, &FieldError{Field: path, Source: fmt.Sprintf("%s:%d", d.file, n.Line), Err: err})
}

func (d *yamlDecoder) section(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if isNull(n) {
		return // "redis:" with nothing under it keeps the defaults
	}
	where := path
	if where == "" {
		where = "the top level"
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, fmt.Errorf("must be a mapping of %s", strings.Join(fieldNames(v.Type()), ", ")))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := deref(n.Content[i]), n.Content[i+1]
		name := k.Value
		p := joinPath(path, name)
		if line, dup := seen[name]; dup {
			d.fail(k, p, fmt.Errorf("set twice (first on line %d)", line))
			continue
		}
		seen[name] = k.Line
		idx := fieldIndex(v.Type(), name)
		if k.Kind != yaml.ScalarNode || idx < 0 {
			d.fail(k, p, fmt.Errorf("unknown field; %s has %s", where, strings.Join(fieldNames(v.Type()), ", ")))
			continue
		}
		if fv := v.Field(idx); fv.Kind() == reflect.Struct {
			d.section(val, fv, p)
		} else {
			d.origins[p] = fmt.Sprintf("%s:%d", d.file, k.Line)
			d.leaf(deref(val), fv, p)
		}
	}
}

func (d *yamlDecoder) leaf(n *yaml.Node, v reflect.Value, path string) {
	switch {
	case v.Kind() == reflect.Slice:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, errors.New(`must be a list, e.g. ["a:1", "b:2"]`))
			return
		}
		items := make([]string, 0, len(n.Content))
		for _, it := range n.Content {
			if it = deref(it); it.Kind != yaml.ScalarNode || isNull(it) {
				d.fail(it, path, errors.New("list items must be single values"))
				return
			}
			items = append(items, it.Value)
		}
		v.Set(reflect.ValueOf(items))
	case n.Kind != yaml.ScalarNode:
		d.fail(n, path, errors.New("must be a single value, not a mapping or a list"))
	case isNull(n) && v.Kind() == reflect.String:
		v.SetString("")
	case isNull(n):
		d.fail(n, path, errors.New("has no value"))
	default:
		if err := setString(v, n.Value); err != nil {
			d.fail(n, path, err)
		}
	}
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// ApplyEnv overrides every field whose variable lookup finds (os.LookupEnv
// in production); a variable set to "" sets the field to "". Errors name the
// variable and the field.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	return c.applyEnv(lookup, map[string]string{})
}

func (c *Config) applyEnv(lookup func(string) (string, bool), origins map[string]string) error {
	var errs []*FieldError
	for _, l := range leavesOf(c) {
		name := EnvName(l.path)
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setString(l.v, s); err != nil {
			errs = append(errs, &FieldError{Field: l.path, Source: name, Err: err})
			continue
		}
		origins[l.path] = name
	}
	return joinFieldErrors(errs)
}

// Flags are the command-line flags of every Config field, one per field
// (-cluster-name, -node-host, -node-port, -redis-addr, …). Only the flags the
// user sets override anything.
type Flags struct {
	values []*flagValue
}

// RegisterFlags defines a flag on fs for every Config field, named by
// FlagName, and returns them for LoadWithFlags or Apply after fs.Parse.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	def := Default()
	for _, l := range leavesOf(&def) {
		fv := &flagValue{path: l.path, typ: l.v.Type(), def: formatValue(l.v)}
		if l.field.Tag.Get("secret") == "true" || l.v.IsZero() {
			fv.def = "" // no "(default false)" in the usage, and never a secret
		}
		f.values = append(f.values, fv)
		fs.Var(fv, FlagName(l.path), l.field.Tag.Get("help")+" ("+EnvName(l.path)+")")
	}
	return f
}

// Apply overrides c's fields with the flags that were set.
func (f *Flags) Apply(c *Config) error { return f.apply(c, map[string]string{}) }

func (f *Flags) apply(c *Config, origins map[string]string) error {
	set := map[string]*flagValue{}
	for _, fv := range f.values {
		if fv.set {
			set[fv.path] = fv
		}
	}
	var errs []*FieldError
	for _, l := range leavesOf(c) {
		fv := set[l.path]
		if fv == nil {
			continue
		}
		name := "-" + FlagName(l.path)
		if err := setString(l.v, fv.raw); err != nil {
			errs = append(errs, &FieldError{Field: l.path, Source: name, Err: err})
			continue
		}
		origins[l.path] = name
	}
	return joinFieldErrors(errs)
}

type flagValue struct {
	path string
	typ  reflect.Type
	def  string
	raw  string
	set  bool
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	if f.set {
		return f.raw
	}
	return f.def
}

// Set checks the syntax at once, so that the flag package reports a bad
// value with the flag's name and usage.
func (f *flagValue) Set(s string) error {
	if err := setString(reflect.New(f.typ).Elem(), s); err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	f.raw, f.set = s, true
	return nil
}

func (f *flagValue) IsBoolFlag() bool { return f != nil && f.typ.Kind() == reflect.Bool }

// Validate reports every problem of c at once (errors.Join), each a
// *FieldError naming the field. It reads the TLS files it names. It does not
// contact Redis: PingRedis does.
func (c Config) Validate() error { return joinFieldErrors(c.problems()) }

type problems []*FieldError

func (p *problems) add(field string, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
}

func (p *problems) addErr(err error) {
	var fe *FieldError
	if errors.As(err, &fe) {
		*p = append(*p, fe)
	}
}

var clusterNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func (c Config) problems() []*FieldError {
	var p problems
	if !clusterNameRE.MatchString(c.Cluster.Name) {
		p.add("cluster.name", "%q is not a name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Cluster.Name)
	}

	c.checkNode(&p)
	c.checkMembership(&p)

	checkHostPort(&p, "redis.addr", c.Redis.Addr)
	if c.Redis.DB < 0 {
		p.add("redis.db", "%d is negative", c.Redis.DB)
	}
	if strings.ContainsFunc(c.Redis.KeyPrefix, isSpace) {
		p.add("redis.key_prefix", "%q contains white space", c.Redis.KeyPrefix)
	}
	positive(&p, "redis.dial_timeout", c.Redis.DialTimeout)
	positive(&p, "redis.read_timeout", c.Redis.ReadTimeout)
	positive(&p, "redis.write_timeout", c.Redis.WriteTimeout)
	if t := c.Redis.TLS; t.Enabled {
		if t.CertFile == "" && t.KeyFile != "" {
			p.add("redis.tls.cert_file", "required with redis.tls.key_file (the client certificate of that key)")
		}
		if t.KeyFile == "" && t.CertFile != "" {
			p.add("redis.tls.key_file", "required with redis.tls.cert_file (the key of that client certificate)")
		}
		if checkFiles(&p, map[string]string{"redis.tls.ca_file": t.CAFile, "redis.tls.cert_file": t.CertFile, "redis.tls.key_file": t.KeyFile}) {
			_, err := c.redisTLS()
			p.addErr(err)
		}
	}

	atLeast(&p, "remote.endpoint_writer_queue_size", c.Remote.EndpointWriterQueueSize, 1)
	atLeast(&p, "remote.endpoint_writer_batch_size", c.Remote.EndpointWriterBatchSize, 1)
	atLeast(&p, "remote.max_retry_count", c.Remote.MaxRetryCount, 1)
	if t := c.Remote.TLS; t.Enabled {
		if t.CertFile == "" {
			p.add("remote.tls.cert_file", "required when remote.tls.enabled is true (the node's certificate)")
		}
		if t.KeyFile == "" {
			p.add("remote.tls.key_file", "required when remote.tls.enabled is true (the key of remote.tls.cert_file)")
		}
		if t.RequireClientCert && t.CAFile == "" {
			p.add("remote.tls.ca_file", "required when remote.tls.require_client_cert is true (peers are accepted when this CA signed their certificate)")
		}
		if checkFiles(&p, map[string]string{"remote.tls.ca_file": t.CAFile, "remote.tls.cert_file": t.CertFile, "remote.tls.key_file": t.KeyFile}) &&
			t.CertFile != "" && t.KeyFile != "" {
			_, _, err := c.RemoteTLS()
			p.addErr(err)
		}
	}

	positive(&p, "timeouts.request", c.Timeouts.Request)
	positive(&p, "timeouts.shutdown", c.Timeouts.Shutdown)
	return p
}

func (c Config) checkNode(p *problems) {
	n := c.Node
	switch {
	case n.Host == "":
		p.add("node.host", "empty: give 127.0.0.1 for nodes on one machine, or a private interface's address")
	case strings.Contains(n.Host, ":") && net.ParseIP(n.Host) == nil:
		p.add("node.host", "%q is not a host: the port goes in node.port", n.Host)
	case net.ParseIP(n.Host) == nil && !isHostName(n.Host):
		p.add("node.host", "%q is not an IP address or host name", n.Host)
	}
	if n.Port < 0 || n.Port > 65535 {
		p.add("node.port", "%d is not a port (0-65535; 0 picks a free one)", n.Port)
	}
	if n.AdvertisedAddress != "" {
		if host, ok := checkHostPort(p, "node.advertised_address", n.AdvertisedAddress); ok && isUnspecified(host) {
			p.add("node.advertised_address", "%q cannot be dialled: give this node's address on the network the other nodes share", n.AdvertisedAddress)
		}
	} else if n.Host != "" && isUnspecified(n.Host) {
		p.add("node.advertised_address", "required when node.host is %q: other nodes cannot dial a wildcard address", n.Host)
	}
}

func (c Config) checkMembership(p *problems) {
	m := c.Membership
	if !slices.Contains(providers, m.Provider) {
		p.add("membership.provider", "%q is not one of %s", m.Provider, strings.Join(providers, ", "))
	}
	if m.HeartbeatInterval < 10*time.Millisecond {
		p.add("membership.heartbeat_interval", "%v is too short (at least 10ms)", m.HeartbeatInterval)
	} else if m.MemberTTL <= m.HeartbeatInterval {
		p.add("membership.member_ttl", "%v must be greater than membership.heartbeat_interval (%v); 2× or more lets a heartbeat be late without removing a live node",
			m.MemberTTL, m.HeartbeatInterval)
	}
	switch m.Provider {
	case ProviderAutomanaged:
		if a := m.Automanaged; a.Port < 1 || a.Port > 65535 {
			p.add("membership.automanaged.port", "%d is not a port (1-65535)", a.Port)
		}
		if len(m.Automanaged.Hosts) == 0 {
			p.add("membership.automanaged.hosts", "empty: list every node's host:port (its membership.automanaged.port)")
		}
		for _, h := range m.Automanaged.Hosts {
			checkHostPort(p, "membership.automanaged.hosts", h)
		}
	case ProviderConsul:
		checkHostPort(p, "membership.consul.address", m.Consul.Address)
	case ProviderEtcd:
		if len(m.Etcd.Endpoints) == 0 {
			p.add("membership.etcd.endpoints", "empty: list the etcd endpoints")
		}
		for _, e := range m.Etcd.Endpoints {
			if u, err := url.Parse(e); err == nil && u.Scheme != "" && u.Host != "" {
				e = u.Host
			}
			checkHostPort(p, "membership.etcd.endpoints", e)
		}
		if !strings.HasPrefix(m.Etcd.BaseKey, "/") {
			p.add("membership.etcd.base_key", "%q must start with /", m.Etcd.BaseKey)
		}
		positive(p, "membership.etcd.dial_timeout", m.Etcd.DialTimeout)
	}
}

// checkHostPort reports whether s is host:port with a port from 1 to 65535.
func checkHostPort(p *problems, field, s string) (host string, ok bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		p.add(field, "%q is not host:port", s)
		return "", false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		p.add(field, "%q: %q is not a port (1-65535)", s, port)
		return "", false
	}
	return host, true
}

// checkFiles reports whether every non-empty path names a readable file.
func checkFiles(p *problems, paths map[string]string) bool {
	ok := true
	for _, field := range slices.Sorted(maps.Keys(paths)) {
		path := paths[field]
		if path == "" {
			continue
		}
		st, err := os.Stat(path)
		var pe *os.PathError
		switch {
		case errors.As(err, &pe):
			p.add(field, "cannot read %q: %w", path, pe.Err)
			ok = false
		case err != nil:
			p.add(field, "cannot read %q: %w", path, err)
			ok = false
		case st.IsDir():
			p.add(field, "%q is a directory, not a PEM file", path)
			ok = false
		}
	}
	return ok
}

func positive(p *problems, field string, d time.Duration) {
	if d <= 0 {
		p.add(field, "%v must be positive", d)
	}
}

func atLeast(p *problems, field string, n, low int) {
	if n < low {
		p.add(field, "%d is below %d", n, low)
	}
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)

func isHostName(s string) bool { return len(s) <= 253 && hostNameRE.MatchString(s) }

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// AdvertisedAddress is the host:port other nodes dial to reach this one, for
// remote.WithAdvertisedHost: node.advertised_address, or else node.host and
// node.port. It is "" when node.port is 0 and nothing is advertised: the
// address is then the listener's, known once remote has started.
func (c Config) AdvertisedAddress() string {
	if c.Node.AdvertisedAddress != "" {
		return c.Node.AdvertisedAddress
	}
	if c.Node.Port == 0 || isUnspecified(c.Node.Host) {
		return ""
	}
	return net.JoinHostPort(c.Node.Host, strconv.Itoa(c.Node.Port))
}

// RemoteBind is the host and port for remote.Configure. protoactor joins them
// as host+":"+port, so an IPv6 host comes back in brackets.
func (c Config) RemoteBind() (host string, port int) {
	if ip := net.ParseIP(c.Node.Host); ip != nil && ip.To4() == nil {
		return "[" + c.Node.Host + "]", c.Node.Port
	}
	return c.Node.Host, c.Node.Port
}

// RemoteTLS builds the TLS configurations of the remote endpoint: server for
// its gRPC server, client for dialling peers. Both are nil when
// remote.tls.enabled is false.
func (c Config) RemoteTLS() (server, client *tls.Config, err error) {
	t := c.Remote.TLS
	if !t.Enabled {
		return nil, nil, nil
	}
	cert, err := loadKeyPair("remote.tls", t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	var pool *x509.CertPool
	if t.CAFile != "" {
		if pool, err = loadCA("remote.tls.ca_file", t.CAFile); err != nil {
			return nil, nil, err
		}
	}
	server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.RequireClientCert {
		server.ClientAuth, server.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	client = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		RootCAs:            pool,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	return server, client, nil
}

func (c Config) redisTLS() (*tls.Config, error) {
	t := c.Redis.TLS
	if !t.Enabled {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(c.Redis.Addr)
	}
	if t.CAFile != "" {
		pool, err := loadCA("redis.tls.ca_file", t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := loadKeyPair("redis.tls", t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func loadCA(field, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, &FieldError{Field: field, Err: err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &FieldError{Field: field, Err: fmt.Errorf("%q holds no PEM certificate", path)}
	}
	return pool, nil
}

func loadKeyPair(section, certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return cert, &FieldError{Field: section + ".cert_file", Err: fmt.Errorf("cannot load %q with %s.key_file %q: %w", certFile, section, keyFile, err)}
	}
	return cert, nil
}

// RedisOptions builds the go-redis options of redis.*, TLS included.
func (c Config) RedisOptions() (*redis.Options, error) {
	tlsConfig, err := c.redisTLS()
	if err != nil {
		return nil, err
	}
	return &redis.Options{
		Addr:         c.Redis.Addr,
		Username:     c.Redis.Username,
		Password:     c.Redis.Password,
		DB:           c.Redis.DB,
		DialTimeout:  c.Redis.DialTimeout,
		ReadTimeout:  c.Redis.ReadTimeout,
		WriteTimeout: c.Redis.WriteTimeout,
		TLSConfig:    tlsConfig,
	}, nil
}

// PingRedis connects to Redis once, without retrying, and returns a
// *FieldError naming the field to fix: redis.addr when Redis cannot be
// reached, redis.tls when the TLS handshake fails, redis.password when the
// credentials are refused, redis.db when the database does not exist. Call it
// before starting anything. It takes at most about
// redis.dial_timeout + redis.read_timeout + redis.write_timeout.
func (c Config) PingRedis(ctx context.Context) error {
	opts, err := c.RedisOptions()
	if err != nil {
		return err
	}
	opts.MaxRetries, opts.DialerRetries, opts.PoolSize = -1, 1, 1
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout+opts.ReadTimeout+opts.WriteTimeout)
	defer cancel()
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return c.redisError(ctx, err)
	}
	return nil
}

func (c Config) redisError(ctx context.Context, err error) error {
	msg, addr := err.Error(), c.Redis.Addr
	switch {
	case strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "AUTH"):
		return &FieldError{Field: "redis.password", Err: fmt.Errorf("%s refused the credentials (redis.username, redis.password): %w", addr, err)}
	case strings.Contains(msg, "DB index is out of range"):
		return &FieldError{Field: "redis.db", Err: fmt.Errorf("no database %d at %s: %w", c.Redis.DB, addr, err)}
	case c.Redis.TLS.Enabled && (isTLSError(err) || tcpAnswers(ctx, addr, c.Redis.DialTimeout)):
		// A server that does not speak TLS often just waits: the handshake
		// times out, and only a plain TCP connection tells it from a dead host.
		return &FieldError{Field: "redis.tls", Err: fmt.Errorf("TLS handshake with %s failed (see redis.tls.*): %w", addr, err)}
	case !c.Redis.TLS.Enabled && (errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset")):
		return &FieldError{Field: "redis.addr", Err: fmt.Errorf("%s closed the connection (does it require TLS? see redis.tls.enabled): %w", addr, err)}
	default:
		return &FieldError{Field: "redis.addr", Err: fmt.Errorf("cannot reach Redis at %s: %w", addr, err)}
	}
}

func tcpAnswers(ctx context.Context, addr string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func isTLSError(err error) bool {
	var (
		rh  tls.RecordHeaderError
		ver *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		ae  tls.AlertError
	)
	return errors.As(err, &rh) || errors.As(err, &ver) || errors.As(err, &ua) || errors.As(err, &he) ||
		errors.As(err, &ci) || errors.As(err, &ae) || strings.Contains(err.Error(), "tls:")
}

// LogValue lists every field for slog, secrets redacted.
func (c Config) LogValue() slog.Value {
	var attrs []slog.Attr
	for _, l := range leavesOf(&c) {
		v := formatValue(l.v)
		if l.field.Tag.Get("secret") == "true" && v != "" {
			v = "(redacted)"
		}
		attrs = append(attrs, slog.String(l.path, v))
	}
	return slog.GroupValue(attrs...)
}

// The rest walks Config by reflection, so that a new field is read from YAML,
// the environment and flags with no other change.

type leaf struct {
	path  string
	field reflect.StructField
	v     reflect.Value // settable
}

func leavesOf(c *Config) []leaf { return appendLeaves(nil, reflect.ValueOf(c).Elem(), "") }

func appendLeaves(out []leaf, v reflect.Value, prefix string) []leaf {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		path := joinPath(prefix, yamlName(f))
		if f.Type.Kind() == reflect.Struct {
			out = appendLeaves(out, v.Field(i), path)
		} else {
			out = append(out, leaf{path: path, field: f, v: v.Field(i)})
		}
	}
	return out
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func fieldIndex(t reflect.Type, name string) int {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return i
		}
	}
	return -1
}

func fieldNames(t reflect.Type) []string {
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = yamlName(t.Field(i))
	}
	return names
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

var durationType = reflect.TypeFor[time.Duration]()

// setString parses s (from YAML, the environment or a flag) into v.
func setString(v reflect.Value, s string) error {
	t := strings.TrimSpace(s)
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(t)
		if err != nil {
			return fmt.Errorf("%q is not a duration (a number with a unit: 500ms, 2s, 1m)", s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(t)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(t)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		v.SetBool(b)
	case v.Type() == reflect.TypeFor[[]string]():
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		panic("cluster: unsupported Config field type " + v.Type().String())
	}
	return nil
}

func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}

func joinFieldErrors(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	all := make([]error, len(errs))
	for i, e := range errs {
		all[i] = e
	}
	return errors.Join(all...)
}
