package cluster

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"time"
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

// What a node does when it finds that its peers dropped it (membership.when_dropped).
const (
	// WhenDroppedRejoin: close its connections with 1012 and rejoin under a
	// new member ID, then serve again.
	WhenDroppedRejoin = "rejoin"
	// WhenDroppedStayOut: close its connections with 1012, refuse upgrades
	// with 503 and report not ready until the process is restarted.
	WhenDroppedStayOut = "stay-out"
)

var whenDropped = []string{WhenDroppedRejoin, WhenDroppedStayOut}

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
	WhenDropped       string             `yaml:"when_dropped" help:"what a node does when its peers removed it (it stalled longer than member_ttl): rejoin or stay-out"`
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
	LanePort                int       `yaml:"lane_port" help:"port of the data lane that carries what a node sends to connections on another, on node.host; 0 (the default) picks a free one, -1 sends it all through the remote"`
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
			WhenDropped:       WhenDroppedRejoin,
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
			LanePort:                0,
			TLS:                     RemoteTLS{RequireClientCert: true},
		},
		Timeouts: TimeoutsSection{Request: 5 * time.Second, Shutdown: 10 * time.Second},
	}
}

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
