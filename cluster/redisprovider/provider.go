package redisprovider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/redis/go-redis/v9"
)

// Provider is a cluster.ClusterProvider backed by Redis. Create it with New;
// it serves one cluster.Cluster and cannot be restarted after Shutdown.
type Provider struct {
	client    redis.UniversalClient
	opts      Options
	redisAddr string // for error messages and logs

	mu           sync.Mutex
	claimed      bool // start was called
	running      bool // start succeeded
	deregistered bool
	outageStart  time.Time // guarded by mu

	// Set once by start, read-only afterwards.
	cluster *cluster.Cluster
	logger  *slog.Logger
	keys    keyspace
	member  bool // registered as a member, not a client

	// self is this member's current incarnation; nil for a client. Rejoin
	// replaces it.
	self       atomic.Pointer[incarnation]
	generation atomic.Int64
	dropped    atomic.Bool // peers dropped self; waiting for Rejoin
	rejoinMu   sync.Mutex  // one Rejoin at a time

	ctx      context.Context // cancelled by halt
	cancel   context.CancelFunc
	haltOnce sync.Once
	wg       sync.WaitGroup
	pollNow  chan struct{}

	psMu     sync.Mutex
	ps       *redis.PubSub
	psClosed bool

	healthy         atomic.Bool
	outages         atomic.Int64
	graceUntil      atomic.Int64 // unix nanoseconds
	lastRegistered  atomic.Int64 // unix nanoseconds of the last successful refresh of our key
	systemStopOnce  sync.Once
	left            leftSet
	known           map[string]*cluster.Member // owned by the watcher
	knownSig        string                     // owned by the watcher
	reportedBadKeys map[string]bool            // owned by the watcher
}

var _ cluster.ClusterProvider = (*Provider)(nil)

// New returns a provider that keeps membership in Redis through client.
// Options are validated when the cluster starts the provider (see
// Options.Validate to check them earlier).
//
// Build client with ContextTimeoutEnabled: true. The provider bounds each
// Redis call by a context deadline of one HeartbeatInterval (at least 200 ms),
// and go-redis ignores context deadlines on the socket otherwise: calls are
// then bounded only by the client's ReadTimeout/WriteTimeout and retries,
// which also delays Shutdown while Redis is unreachable.
func New(client redis.UniversalClient, opts Options) *Provider {
	return &Provider{
		client:    client,
		opts:      opts.withDefaults(),
		redisAddr: describeClient(client),
		pollNow:   make(chan struct{}, 1),
	}
}

// StartMember registers this node as a cluster member and starts heartbeating
// and watching. It fails if Redis cannot be reached; the error names the address.
// protoactor's Cluster.StartMember panics with that error.
func (p *Provider) StartMember(c *cluster.Cluster) error { return p.start(c, true) }

// StartClient watches the member set without registering this node.
func (p *Provider) StartClient(c *cluster.Cluster) error { return p.start(c, false) }

// Shutdown stops heartbeating and watching and waits for the provider's
// goroutines. If graceful, it also deletes this member's key and publishes a
// leave event, so peers drop it at once; otherwise the key expires after TTL.
//
// protoactor's Cluster.Shutdown calls this only when graceful; after
// Cluster.Shutdown(false) the provider notices that the actor system stopped
// and stops heartbeating by itself.
func (p *Provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	if !running {
		return nil
	}
	p.halt()
	p.wg.Wait()
	if !graceful || !p.member {
		return nil
	}
	return p.deregister()
}

// Healthy reports whether the provider's last Redis operation succeeded.
// It is false before the provider starts.
func (p *Provider) Healthy() bool { return p.healthy.Load() }

// Outages counts the times Redis became unreachable after being reachable.
func (p *Provider) Outages() int64 { return p.outages.Load() }

func (p *Provider) start(c *cluster.Cluster, member bool) error {
	if err := p.opts.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	if p.claimed {
		p.mu.Unlock()
		return errors.New("redisprovider: provider already started; use one Provider per cluster node")
	}
	p.claimed = true
	p.mu.Unlock()

	p.cluster = c
	p.logger = p.opts.Logger
	if p.logger == nil {
		p.logger = c.Logger()
	}
	p.logger = p.logger.With(slog.String("component", "redisprovider"),
		slog.String("cluster", c.Config.Name), slog.String("member", c.ActorSystem.ID))
	p.keys = newKeyspace(p.opts.KeyPrefix, c.Config.Name)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.known = map[string]*cluster.Member{}
	p.reportedBadKeys = map[string]bool{}

	ctx, cancel := context.WithTimeout(p.ctx, p.startTimeout())
	defer cancel()
	if err := p.client.Ping(ctx).Err(); err != nil {
		p.cancel()
		return fmt.Errorf("redisprovider: cannot reach Redis at %s: %w", p.redisAddr, err)
	}
	p.healthy.Store(true)

	if member {
		if err := p.register(ctx); err != nil {
			p.cancel()
			return err
		}
	}

	// Subscribe before the first poll so no event after it is missed.
	p.ps = p.client.Subscribe(p.ctx, p.keys.channel)
	p.pollOnce(ctx)
	if member {
		p.publish(ctx, p.self.Load(), eventJoin)
	}

	loops := []func(){p.watchLoop, p.eventLoop}
	if member {
		loops = append(loops, p.heartbeatLoop)
	}
	p.wg.Add(len(loops))
	for _, loop := range loops {
		go loop()
	}
	p.mu.Lock()
	p.running = true
	p.mu.Unlock()
	p.logger.Info("cluster membership in Redis started",
		slog.String("redis", p.redisAddr), slog.Bool("member", member),
		slog.Duration("heartbeat", p.opts.HeartbeatInterval), slog.Duration("ttl", p.opts.TTL))
	return nil
}

func (p *Provider) register(ctx context.Context) error {
	host, port, err := p.cluster.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("redisprovider: member address: %w", err)
	}
	if port <= 0 {
		return fmt.Errorf("redisprovider: member address %q has no port: start remote before the provider", p.cluster.ActorSystem.Address())
	}
	kinds := p.cluster.GetClusterKinds()
	sort.Strings(kinds)
	self, err := p.newIncarnation(&record{ID: p.cluster.ActorSystem.ID, Host: host, Port: port, Kinds: kinds, StartedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	if err := p.client.Set(ctx, self.key, self.json, p.opts.TTL).Err(); err != nil {
		return fmt.Errorf("redisprovider: register member %s in Redis at %s: %w", self.rec.ID, p.redisAddr, err)
	}
	p.member = true
	p.self.Store(self)
	p.lastRegistered.Store(time.Now().UnixNano())
	return nil
}

func (p *Provider) deregister() error {
	p.mu.Lock()
	done := p.deregistered
	p.deregistered = true
	p.mu.Unlock()
	if done {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.startTimeout())
	defer cancel()
	self := p.self.Load()
	payload := encodeEvent(eventLeave, self.rec.ID)
	// One round trip; Redis runs them in order, so a peer woken by the event
	// no longer finds the key.
	_, err := p.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, self.key)
		pipe.Publish(ctx, p.keys.channel, payload)
		return nil
	})
	if err != nil {
		p.logger.Warn("could not deregister from Redis; peers will drop this member when its key expires",
			slog.String("redis", p.redisAddr), slog.Duration("ttl", p.opts.TTL), slog.Any("error", err))
		return fmt.Errorf("redisprovider: deregister member %s at %s: %w", self.rec.ID, p.redisAddr, err)
	}
	p.logger.Info("deregistered from Redis")
	return nil
}

// halt stops the loops without touching Redis. Safe to call many times.
func (p *Provider) halt() {
	p.haltOnce.Do(func() {
		p.cancel()
		p.psMu.Lock()
		p.psClosed = true
		if p.ps != nil {
			_ = p.ps.Close()
		}
		p.psMu.Unlock()
	})
}

// actorSystemStopped handles Cluster.Shutdown(false), which never calls
// the provider: stop heartbeating so that peers drop this member after TTL.
func (p *Provider) actorSystemStopped() {
	p.systemStopOnce.Do(func() {
		p.logger.Info("actor system stopped: heartbeats stopped; peers drop this member when its key expires unless Shutdown(true) deletes it")
	})
	p.halt()
}

// observe tracks Redis health from the outcome of an operation: one warning
// per outage, an info line and a grace period on recovery.
func (p *Provider) observe(op string, err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		if p.healthy.Load() {
			return
		}
		p.mu.Lock()
		if p.healthy.Load() {
			p.mu.Unlock()
			return
		}
		p.healthy.Store(true)
		down := time.Since(p.outageStart)
		p.mu.Unlock()
		// Redis may have restarted empty: give live members time to re-register.
		p.beginGrace()
		p.logger.Info("Redis reachable again; resynchronising membership",
			slog.String("redis", p.redisAddr), slog.Duration("outage", down.Round(time.Millisecond)),
			slog.Int64("outages", p.outages.Load()))
		p.poke()
		return
	}
	if p.ctx.Err() != nil {
		return // shutting down: cancelled calls are not an outage
	}
	if !p.healthy.Load() {
		return
	}
	p.mu.Lock()
	if !p.healthy.Load() {
		p.mu.Unlock()
		return
	}
	p.healthy.Store(false)
	p.outageStart = time.Now()
	n := p.outages.Add(1)
	p.mu.Unlock()
	p.logger.Warn("Redis unreachable: keeping the last known cluster topology until it returns",
		slog.String("redis", p.redisAddr), slog.String("op", op), slog.Any("error", err),
		slog.Int64("outages", n))
}

// beginGrace suspends removals for one TTL plus one heartbeat: long enough
// for every live member to re-register after Redis lost the keys.
func (p *Provider) beginGrace() {
	p.graceUntil.Store(time.Now().Add(p.opts.TTL + p.opts.HeartbeatInterval).UnixNano())
}

func (p *Provider) inGrace() bool { return time.Now().UnixNano() < p.graceUntil.Load() }

func (p *Provider) poke() {
	select {
	case p.pollNow <- struct{}{}:
	default:
	}
}

// opTimeout bounds one Redis call of a loop (see New about ContextTimeoutEnabled).
func (p *Provider) opTimeout() time.Duration {
	return max(p.opts.HeartbeatInterval, 200*time.Millisecond)
}

func (p *Provider) startTimeout() time.Duration {
	return max(p.opts.TTL, 2*time.Second)
}

// sleep waits d or until the provider halts; false means halted.
func (p *Provider) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func describeClient(c redis.UniversalClient) string {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	case *redis.Ring:
		addrs := make([]string, 0, len(c.Options().Addrs))
		for _, a := range c.Options().Addrs {
			addrs = append(addrs, a)
		}
		sort.Strings(addrs)
		return strings.Join(addrs, ",")
	default:
		return fmt.Sprint(c)
	}
}
