package cluster

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

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
	if lp := c.Remote.LanePort; lp < -1 || lp > 65535 {
		p.add("remote.lane_port", "%d is not a port (0-65535; 0 picks a free one, -1 turns the lane off)", lp)
	}
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
	if !slices.Contains(whenDropped, m.WhenDropped) {
		p.add("membership.when_dropped", "%q is not one of %s", m.WhenDropped, strings.Join(whenDropped, ", "))
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
