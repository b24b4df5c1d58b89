package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/consul"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/hashicorp/consul/api"
	"github.com/redis/go-redis/v9"
	"github.com/wsactor/wsactor"
	"github.com/wsactor/wsactor/actors"
	"github.com/wsactor/wsactor/cluster/redisprovider"
	"github.com/wsactor/wsactor/groups"
	"github.com/wsactor/wsactor/groups/redisdir"
	"github.com/wsactor/wsactor/internal/lane"
	"github.com/wsactor/wsactor/internal/logging"
	"github.com/wsactor/wsactor/rooms"
	"github.com/wsactor/wsactor/rooms/redisstore"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Node is this process's membership in a wsactor cluster: an actor system
// with protoactor remote started, a cluster member registered with the
// configured provider, a Redis client and the shared directory.
type Node struct {
	cfg    Config
	logger *slog.Logger

	// System hosts the node's actors; its address is in every connection ID minted here.
	System *actor.ActorSystem
	// Cluster is the protoactor cluster member.
	Cluster *cluster.Cluster
	// Redis is the client of the shared directory (and of Redis membership).
	Redis *redis.Client
	// Directory is the cluster-wide groups directory.
	Directory *redisdir.Directory
	// RoomStore keeps the rooms' snapshots, listings and seat reservations,
	// shared by the nodes (see package rooms).
	RoomStore rooms.Store

	view     *memberView
	lane     *lane.Hub                  // nil with remote.lane_port -1
	logs     *logging.ProtoactorHandler // protoactor's records, told when the node stops
	provider *redisprovider.Provider    // nil with another provider
	dropped  chan string                // member IDs the peers dropped (from the provider)

	mu       sync.Mutex
	servers  []*wsactor.Server // attached, and not shut down
	attached bool              // a server was attached: the node follows departures and Redis
	isolated bool              // the peers dropped this node and it has not rejoined
	stop     chan struct{}
	stopped  sync.WaitGroup
	once     sync.Once
	stats    Stats
}

// Stats counts the node's dealings with Redis.
type Stats struct {
	RedisHealthy bool  // the last check reached Redis
	RedisOutages int64 // times Redis became unreachable
	Resyncs      int64 // times this node rewrote its directory entries
	// Departures counts members that left the cluster and whose directory
	// clean-up this node has finished (successfully or not: failures are logged).
	Departures int64
	// Drops counts the times the other members dropped this node (it could
	// not renew its membership for longer than the member TTL), and Rejoins
	// the times it came back under a new member ID.
	Drops, Rejoins int64
	// Lane is the node's data lane (remote.lane_port), nil when it has none.
	Lane *LaneStats
}

// LaneStats counts a node's data-lane traffic: connections open now, to
// (Links) and from (Sessions) other nodes; frames handed on (FramesIn) and
// written (FramesOut); frames written that the peer never handled because
// the lane broke (FramesLost); incoming connections refused (Refused); and
// frames for a server this node does not run (Dropped).
type LaneStats = lane.Stats

// Start joins the cluster described by cfg. It validates cfg and checks that
// Redis answers before starting anything: on error nothing is left running.
func Start(ctx context.Context, cfg Config, logger *slog.Logger) (*Node, error) {
	return StartWithProvider(ctx, cfg, nil, logger)
}

// StartWithProvider is Start with a membership provider built by the
// caller (any protoactor cluster.ClusterProvider, such as k8s); nil builds
// the one cfg names.
func StartWithProvider(ctx context.Context, cfg Config, provider cluster.ClusterProvider, logger *slog.Logger) (n *Node, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkListen(cfg); err != nil {
		return nil, err
	}
	if err := cfg.PingRedis(ctx); err != nil {
		return nil, err
	}
	ropts, err := cfg.RedisOptions()
	if err != nil {
		return nil, err
	}
	// Let the contexts of the provider's and directory's calls bound them.
	ropts.ContextTimeoutEnabled = true
	routeRedisLogs(logger)
	rc, err := remoteConfig(cfg)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(ropts)
	var rp *redisprovider.Provider
	dropped := make(chan string, 1)
	if provider == nil {
		provider, rp, err = buildProvider(cfg, rdb, logger, dropped)
		if err != nil {
			_ = rdb.Close()
			return nil, err
		}
	}
	// protoactor's routine events (a peer that left, this node leaving)
	// go to Debug once the view below says who the members are.
	actorLogs := logging.Protoactor(logger.Handler(), slog.LevelWarn)
	actorLogger := slog.New(actorLogs).With(slog.String("component", "protoactor"))
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return actorLogger }))
	c := cluster.New(system, cluster.Configure(cfg.Cluster.Name, provider, disthash.New(), rc,
		cluster.WithRequestTimeout(cfg.Timeouts.Request), withoutGossipRounds, cluster.WithKinds(roomKind(system))))
	view := newMemberView(c) // before StartMember, to see every topology event
	actorLogs.SetMembers(view.Alive)
	// The lane listens before the node joins, so that peers find it.
	hub, err := startLane(system, cfg, logger)
	if err != nil {
		view.close()
		_ = rdb.Close()
		return nil, err
	}
	if err := startMember(c); err != nil {
		view.close()
		abandonMember(c)
		if hub != nil {
			hub.Close()
		}
		_ = rdb.Close()
		return nil, err
	}
	n = &Node{
		cfg:       cfg,
		logger:    logger,
		System:    system,
		Cluster:   c,
		Redis:     rdb,
		Directory: redisdir.New(rdb, redisdir.Options{KeyPrefix: cfg.Redis.KeyPrefix + "dir:" + cfg.Cluster.Name + ":", Logger: logger}),
		RoomStore: redisstore.New(rdb, redisstore.Options{KeyPrefix: cfg.Redis.KeyPrefix + "rooms:" + cfg.Cluster.Name + ":", Logger: logger}),
		view:      view,
		lane:      hub,
		logs:      actorLogs,
		provider:  rp,
		dropped:   dropped,
		stop:      make(chan struct{}),
	}
	n.stats.RedisHealthy = true
	n.stopped.Add(1)
	go n.followDrops()
	logger.Info("wsactor: joined the cluster", slog.String("cluster", cfg.Cluster.Name), slog.String("address", system.Address()),
		slog.String("provider", cfg.Membership.Provider), slog.Int("members", len(n.view.Peers())+1))
	return n, nil
}

// checkListen tells which field to fix when the remote endpoint cannot
// listen: protoactor's remote would panic with a bare "failed to listen"
// once the actor system runs. The port is free again when it returns; one
// taken in the moment before protoactor listens still fails, in startMember.
func checkListen(cfg Config) error {
	addr := net.JoinHostPort(cfg.Node.Host, strconv.Itoa(cfg.Node.Port))
	l, err := net.Listen("tcp", addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return &FieldError{Field: "node.port", Err: fmt.Errorf("%d is in use on %s: %w", cfg.Node.Port, cfg.Node.Host, err)}
	case err != nil:
		return &FieldError{Field: "node.host", Err: fmt.Errorf("the remote endpoint cannot listen on %s: %w", addr, err)}
	}
	return l.Close()
}

// withoutGossipRounds turns protoactor's gossip rounds off. wsactor does not
// use gossip (membership, placement and departures come from the provider),
// and in this protoactor-go version a round is a data race: the gossip actor
// updates state entries (cluster/gossip_state_management.go:43-49, and the
// maps above them) that the endpoint writer of an earlier round may still be
// serializing for a peer, which can end in Go's fatal "concurrent map
// iteration and map write". Found by the chaos suite. The gossip actor
// still starts (protoactor requires it) and keeps its state locally; with no
// rounds it never sends it, and no peer blocks a member for a missed gossip
// heartbeat (HeartbeatExpiration) either: the provider alone decides.
var withoutGossipRounds cluster.ConfigOption = func(c *cluster.Config) { c.GossipInterval = 100 * 365 * 24 * time.Hour }

// startMember runs protoactor's StartMember, which panics on failure.
func startMember(c *cluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("wsactor/cluster: start member: %v", r)
		}
	}()
	c.StartMember()
	return nil
}

// abandonMember stops what a failed StartMember started: the actor system
// and, depending on how far it got, the identity lookup, the gossip actor and
// loop, and the remote endpoint, which would otherwise keep listening. A part
// that never started panics on a nil field when stopped; that is ignored.
func abandonMember(c *cluster.Cluster) {
	c.ActorSystem.Shutdown()
	ignorePanic(func() { c.IdentityLookup.Shutdown() })
	ignorePanic(c.Gossip.Shutdown)
	ignorePanic(func() { c.Remote.Shutdown(true) }) // graceful: stops the endpoint manager too
}

func ignorePanic(f func()) {
	defer func() { _ = recover() }()
	f()
}

func remoteConfig(cfg Config) (*remote.Config, error) {
	host, port := cfg.RemoteBind()
	opts := []remote.ConfigOption{
		// protoactor's default preallocates ~15 MiB per peer and direction.
		remote.WithEndpointWriterQueueSize(cfg.Remote.EndpointWriterQueueSize),
		remote.WithEndpointWriterBatchSize(cfg.Remote.EndpointWriterBatchSize),
	}
	if a := cfg.AdvertisedAddress(); a != "" {
		opts = append(opts, remote.WithAdvertisedHost(a))
	}
	server, client, err := cfg.RemoteTLS()
	if err != nil {
		return nil, err
	}
	serverOpts := []grpc.ServerOption{RemoteReceiveLimit()}
	if server != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(server)))
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(client))))
	}
	opts = append(opts, remote.WithServerOptions(serverOpts...))
	rc := remote.Configure(host, port, opts...)
	rc.MaxRetryCount = cfg.Remote.MaxRetryCount
	return rc, nil
}

func buildProvider(cfg Config, rdb *redis.Client, logger *slog.Logger, dropped chan<- string) (cluster.ClusterProvider, *redisprovider.Provider, error) {
	m := cfg.Membership
	switch m.Provider {
	case ProviderRedis:
		p := redisprovider.New(rdb, redisprovider.Options{
			KeyPrefix:         cfg.Redis.KeyPrefix,
			HeartbeatInterval: m.HeartbeatInterval,
			TTL:               m.MemberTTL,
			Logger:            logger,
			// The provider reports a member ID once, and the next only
			// after a rejoin, which the node makes after reading this one.
			OnDropped: func(id string) {
				select {
				case dropped <- id:
				default:
				}
			},
		})
		return p, p, nil
	case ProviderAutomanaged:
		return automanaged.NewWithConfig(m.HeartbeatInterval, m.Automanaged.Port, m.Automanaged.Hosts...), nil, nil
	case ProviderConsul:
		p, err := consul.NewWithConfig(&api.Config{Address: m.Consul.Address, Token: m.Consul.Token},
			consul.WithTTL(m.MemberTTL), consul.WithRefreshTTL(m.HeartbeatInterval))
		if err != nil {
			return nil, nil, &FieldError{Field: "membership.consul", Err: err}
		}
		return p, nil, nil
	case ProviderEtcd:
		logger.Warn("wsactor: membership provider etcd has known problems with this protoactor-go version " +
			"(a node starting at the same time as another may never see it; clusters whose names share a prefix see each other; " +
			"a fixed 3s lease): see the README's cluster section; use provider redis")
		p, err := etcd.NewWithConfig(m.Etcd.BaseKey, clientv3.Config{Endpoints: m.Etcd.Endpoints, DialTimeout: m.Etcd.DialTimeout})
		if err != nil {
			return nil, nil, &FieldError{Field: "membership.etcd", Err: err}
		}
		return p, nil, nil
	}
	// k8s: its client pulls in client-go; build k8s.New() and call StartWithProvider.
	return nil, nil, &FieldError{Field: "membership.provider", Err: fmt.Errorf("%q is not built in: build it and call StartWithProvider", m.Provider)}
}

// ServerOptions returns opts for a wsactor server on this node: its actor
// system, its view of the cluster and the shared directory.
func (n *Node) ServerOptions(opts wsactor.Options) wsactor.Options {
	opts.ActorSystem = n.System
	opts.Cluster = n.view
	opts.Groups.Directory = n.Directory
	if opts.Groups.Logger == nil {
		opts.Groups.Logger = n.logger
	}
	server := opts.Name
	if server == "" {
		server = wsactor.DefaultName
	}
	opts.Rooms.Placement = &roomPlacement{c: n.Cluster, server: server, view: n.view,
		settle: n.cfg.Membership.MemberTTL + n.cfg.Membership.HeartbeatInterval}
	opts.Rooms.Store = n.RoomStore
	if opts.Rooms.Logger == nil {
		opts.Rooms.Logger = n.logger
	}
	return opts
}

// Attach wires a server made with ServerOptions to the node: connections of
// members that leave are removed from the directory, and this node's entries
// are rewritten now (clearing what an earlier process on this address left)
// and whenever Redis comes back or lost its data. The remaining members of
// the groups a departed node's connections were in hear "left" events (with
// Options.Groups.PresenceEvents).
func (n *Node) Attach(s *wsactor.Server) {
	n.mu.Lock()
	n.servers = append(n.servers, s)
	if n.isolated {
		s.Suspend(wsactor.StatusServiceRestart, reasonDropped)
	}
	first := !n.attached
	n.attached = true
	n.mu.Unlock()
	if first {
		n.view.OnLeft(n.nodeGone)
	}
	gone := n.resync()
	if first {
		// Entries the first write removed were left by an earlier process
		// on this address (a crash and a restart within the member TTL, so
		// no survivor saw the node leave): nobody announced them.
		n.announce(context.Background(), gone)
		n.stopped.Add(1)
		go n.watchRedis()
	}
}

// nodeGone removes the connections of a member that left the cluster from
// the directory. Every survivor runs it; the directory reports each
// connection's memberships to the one that removed them, which announces
// them, so each "left" event is sent once. When a newer process already
// holds the address, it has replaced the member's entries (and announced
// them) itself, and there is nothing to remove.
func (n *Node) nodeGone(address, memberID string) {
	if address == n.Address() {
		// An earlier incarnation of this process, or a predecessor on this
		// address: resync (on start, on rejoin) has replaced its entries.
		return
	}
	defer func() {
		n.mu.Lock()
		n.stats.Departures++
		n.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeouts.Request)
	defer cancel()
	gone, err := n.Directory.RemoveNode(ctx, address, memberOwner(memberID))
	if err != nil {
		n.logger.Warn("wsactor: could not remove a departed node's connections from the directory", slog.String("node", address), slog.Any("err", err))
	}
	n.announce(ctx, gone)
}

// memberOwner returns the actor-system ID a cluster member ID stands for:
// the owner this node's process records in the directory (NodeState.Owner).
// protoactor's providers use the system ID itself, except etcd's, which
// registers "<cluster>@<system ID>".
func memberOwner(memberID string) string {
	if i := strings.LastIndexByte(memberID, '@'); i >= 0 {
		return memberID[i+1:]
	}
	return memberID
}

// announce sends the "left" events of departures through every attached
// server: a server's broadcasts reach its own members (on every node), and
// the servers of a node share its directory.
func (n *Node) announce(ctx context.Context, gone groups.Departures) {
	for _, s := range n.liveServers() {
		s.Groups().AnnounceDepartures(ctx, gone)
	}
}

// liveServers returns the attached servers, forgetting those that have shut
// down.
func (n *Node) liveServers() []*wsactor.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.servers = slices.DeleteFunc(n.servers, func(s *wsactor.Server) bool { return s.Groups().Stopped() })
	return slices.Clone(n.servers)
}

// NewServer starts a node and a wsactor server on it, wired together.
func NewServer(ctx context.Context, cfg Config, opts wsactor.Options) (*wsactor.Server, *Node, error) {
	n, err := Start(ctx, cfg, opts.Logger)
	if err != nil {
		return nil, nil, err
	}
	s := wsactor.New(n.ServerOptions(opts))
	n.Attach(s)
	return s, n, nil
}

// Address returns the node's actor-system address.
func (n *Node) Address() string { return n.System.Address() }

// Peers returns the addresses of the other live members.
func (n *Node) Peers() []string { return n.view.Peers() }

// View returns the node's membership view (a wsactor.ClusterView).
func (n *Node) View() actors.Cluster { return n.view }

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	st := n.stats
	n.mu.Unlock()
	if n.lane != nil {
		l := LaneStats(n.lane.Stats())
		st.Lane = &l
	}
	return st
}

// resync rewrites this node's directory entries from the state of every
// attached server at once: ReplaceNode makes Redis hold exactly the state it
// is given for the node's address, so a call per server would delete the
// entries of the servers before it. Each hub's lock is held (in attachment
// order) until the write is done, so no join or leave slips in between.
// It returns what the write removed.
func (n *Node) resync() groups.Departures {
	servers := n.liveServers()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeouts.Request)
	defer cancel()
	state := redisdir.NodeState{Groups: map[string][]groups.Member{}, Users: map[string][]actors.ID{}, Owner: n.MemberID()}
	var gone groups.Departures
	var from func(i int) error
	from = func(i int) error {
		if i == len(servers) {
			var err error
			gone, err = n.Directory.ReplaceNode(ctx, n.Address(), state)
			return err
		}
		return servers[i].Groups().Resync(ctx, func(ctx context.Context, gs map[string][]groups.Member, users map[string][]actors.ID) error {
			for g, ms := range gs {
				state.Groups[g] = append(state.Groups[g], ms...)
			}
			for u, ids := range users {
				state.Users[u] = append(state.Users[u], ids...)
			}
			return from(i + 1)
		})
	}
	err := from(0)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.stats.Resyncs++
	}
	return gone
}

// watchRedis checks Redis every heartbeat. When it was unreachable, lost the
// directory's data (its epoch changed), or a directory write failed, this
// node rewrites its own entries from its in-memory truth.
func (n *Node) watchRedis() {
	defer n.stopped.Done()
	t := time.NewTicker(n.cfg.Membership.HeartbeatInterval)
	defer t.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeouts.Request)
	epoch, _ := n.Directory.Epoch(ctx)
	cancel()
	var seenErrors int64
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeouts.Request)
		e, err := n.Directory.Epoch(ctx)
		cancel()
		n.mu.Lock()
		wasHealthy := n.stats.RedisHealthy
		n.stats.RedisHealthy = err == nil
		if err != nil && wasHealthy {
			n.stats.RedisOutages++
		}
		servers := slices.Clone(n.servers)
		n.mu.Unlock()
		if err != nil {
			if wasHealthy {
				n.logger.Warn("wsactor: Redis is unreachable; local traffic carries on, the directory is stale", slog.Any("err", err))
			}
			continue
		}
		var errs int64
		for _, s := range servers {
			errs += s.Groups().DirectoryErrors()
		}
		if !wasHealthy || e != epoch || errs != seenErrors {
			n.logger.Info("wsactor: resynchronising this node's directory entries", slog.Bool("redis_was_down", !wasHealthy), slog.Bool("redis_lost_data", e != epoch))
			n.resync()
			epoch, seenErrors = e, errs
		}
	}
}

// Stop leaves the cluster: call it after the servers on the node have shut
// down (their rooms have then handed over). It deregisters at once (peers
// drop the node without waiting for its TTL), stops remote and the actor
// system, and closes the Redis client. It returns when that is done or
// shortly after ctx ends, whichever comes first: protoactor's part takes
// about 2 s (a fixed pause for the hand-over of grains) and may wait up to
// 10 s for its gRPC server; past ctx it goes on in the background, and the
// Redis client is closed once it is done, so that the deregistration it
// makes still reaches Redis.
func (n *Node) Stop(ctx context.Context) error {
	var err error
	n.once.Do(func() {
		n.logs.SetStopping()
		close(n.stop)
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.stopped.Wait() // the Redis watch and the rejoin loop, each within a request timeout
			n.Cluster.Shutdown(true)
			if n.lane != nil {
				n.lane.Close()
			}
		}()
		select {
		case <-done:
			err = n.Redis.Close()
		case <-ctx.Done():
			err = fmt.Errorf("wsactor/cluster: leaving the cluster: %w", ctx.Err())
			go func() {
				<-done
				_ = n.Redis.Close()
			}()
		}
	})
	return err
}

var redisLogOnce sync.Once

// routeRedisLogs sends go-redis's own log lines (failed dials, pool events),
// which go to a process-wide logger, into slog at Warn.
func routeRedisLogs(logger *slog.Logger) {
	redisLogOnce.Do(func() { redis.SetLogger(redisLogger{logger.With(slog.String("component", "go-redis"))}) })
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// startLane starts the node's data lane (see internal/lane) on node.host
// and remote.lane_port, with the remote's TLS; nil with lane_port -1.
func startLane(system *actor.ActorSystem, cfg Config, logger *slog.Logger) (*lane.Hub, error) {
	if cfg.Remote.LanePort < 0 {
		return nil, nil
	}
	server, client, err := cfg.RemoteTLS()
	if err != nil {
		return nil, err
	}
	hub, err := lane.Start(system, lane.Config{
		Listen:    net.JoinHostPort(cfg.Node.Host, strconv.Itoa(cfg.Remote.LanePort)),
		ServerTLS: server, ClientTLS: client, WriteTimeout: cfg.Timeouts.Request, Logger: logger,
	})
	if err != nil {
		return nil, &FieldError{Field: "remote.lane_port", Err: err}
	}
	return hub, nil
}

// RemoteReceiveLimit is the gRPC server option that every node's protoactor
// remote endpoint needs: it lifts gRPC's default 4 MiB limit on a received
// message to the most gRPC allows (2 GiB). protoactor's endpoint writer puts
// up to remote.endpoint_writer_batch_size messages in one gRPC message, so a
// few large messages, or many small ones, exceed 4 MiB together, and a peer
// refusing that gRPC message drops every message in it. Node sets it; pass
// it to remote.WithServerOptions when you start remote yourself for a
// Server with a ClusterView.
func RemoteReceiveLimit() grpc.ServerOption { return grpc.MaxRecvMsgSize(math.MaxInt32) }
