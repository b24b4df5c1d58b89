package metrics

import "github.com/prometheus/client_golang/prometheus"

// descs are the collector's metric descriptors. The README's Operations
// section lists the same names and meanings: keep them together.
type descs struct {
	open, held, ready, accepted, rejected               *prometheus.Desc
	msgIn, msgOut, bytesIn, bytesOut                    *prometheus.Desc
	closes, slow, dropped, rateLimited, undecodable     *prometheus.Desc
	nodeQueueFull                                       *prometheus.Desc
	panics, restarts, mailbox                           *prometheus.Desc
	bcastTime, bcastN, dirOps, dirErrs                  *prometheus.Desc
	roomsActive, tickLate, failovers                    *prometheus.Desc
	roomPanics, roomRestarts, roomFenced, roomStoreErrs *prometheus.Desc
	members, isolated, redisUp, redisOutages            *prometheus.Desc
	drops, rejoins, resyncs, departures                 *prometheus.Desc
	laneSessions, laneFrames, laneLost, laneRefused     *prometheus.Desc
}

func newDescs(constLabels prometheus.Labels) descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("wsactor_"+name, help, labels, constLabels)
	}
	return descs{
		open:          d("connections_open", "WebSocket connections open (their OnClose has not finished)."),
		held:          d("connections_held", "Connections counted against MaxConnections: TCP connections of the server's listeners, and upgrades in progress."),
		ready:         d("server_ready", "1 while the server accepts upgrades (not suspended, not shutting down)."),
		accepted:      d("connections_accepted_total", "Upgrades that became connection actors."),
		rejected:      d("connections_rejected_total", "Handshakes and TCP connections refused, by reason: auth, origin, limit, path, handshake, unavailable, connect, error.", "reason"),
		msgIn:         d("messages_received_total", "WebSocket messages read from clients."),
		msgOut:        d("messages_sent_total", "WebSocket messages written to clients."),
		bytesIn:       d("received_bytes_total", "Payload bytes of the messages read from clients."),
		bytesOut:      d("sent_bytes_total", "Payload bytes of the messages written to clients."),
		closes:        d("closes_total", "Connections ended, by close code and by who ended them: client, server, timeout, limit.", "code", "by"),
		slow:          d("slow_consumer_closes_total", "Connections closed with 1013 as slow consumers: send queue overflowed, or stopped reading."),
		dropped:       d("send_queue_dropped_total", "Outbound messages dropped by a drop-newest or drop-oldest overflow policy."),
		rateLimited:   d("messages_rate_limited_total", "Inbound messages beyond their connection's rate limit."),
		undecodable:   d("messages_undecodable_total", "Messages from other nodes dropped because this node could not decode them."),
		nodeQueueFull: d("node_queue_full_total", "Messages for connections on other nodes refused or dropped because the queue to their node was full (Options.NodeQueueBytes)."),
		panics:        d("handler_panics_total", "Connection handler panics recovered."),
		restarts:      d("handler_restarts_total", "Connection handler restarts after a panic."),
		mailbox:       d("mailbox_latency_seconds", "Time from reading a message off the socket to the end of the handler's OnMessage, sampled on one message in 64 per connection."),
		bcastTime:     d("broadcast_duration_seconds", "Time to post a group broadcast to the mailboxes of this node's members."),
		bcastN:        d("broadcast_recipients", "This node's members reached by a group broadcast."),
		dirOps:        d("directory_operations_total", "Calls to the groups directory, by operation.", "op"),
		dirErrs:       d("directory_errors_total", "Calls to the groups directory that failed, by operation.", "op"),
		roomsActive:   d("rooms_active", "Room activations running on this node."),
		tickLate:      d("room_tick_lateness_seconds", "How late room ticks ran."),
		failovers:     d("room_failovers_total", "Rooms this node took over without a handover (their node gone), from their last snapshot."),
		roomPanics:    d("room_panics_total", "Room handler panics recovered."),
		roomRestarts:  d("room_restarts_total", "Room handler restarts after a panic."),
		roomFenced:    d("room_fenced_total", "Room activations stopped because a newer one took their room."),
		roomStoreErrs: d("room_store_errors_total", "Room store writes that failed (retried)."),
		members:       d("cluster_members", "Live members of the cluster, this node included."),
		isolated:      d("cluster_isolated", "1 while the other members have dropped this node and it has not rejoined."),
		redisUp:       d("redis_up", "1 if the node's last Redis check (every heartbeat) succeeded."),
		redisOutages:  d("redis_outages_total", "Times Redis became unreachable."),
		drops:         d("cluster_drops_total", "Times the other members dropped this node."),
		rejoins:       d("cluster_rejoins_total", "Times this node rejoined under a new member ID."),
		resyncs:       d("directory_resyncs_total", "Times this node rewrote its directory entries from memory."),
		departures:    d("cluster_departures_total", "Members that left and whose directory entries this node cleaned up."),
		laneSessions:  d("lane_connections", "Data-lane connections to and from other nodes, by direction: in, out.", "direction"),
		laneFrames:    d("lane_frames_total", "Data-lane frames (batches of sends to connections) by direction: in (handed on), out (written).", "direction"),
		laneLost:      d("lane_frames_lost_total", "Data-lane frames this node wrote that the peer never handled: in flight when a lane broke."),
		laneRefused:   d("lane_refused_total", "Incoming data-lane connections refused: a bad hello or token, or an ended session."),
	}
}

func (d *descs) all() []*prometheus.Desc {
	return []*prometheus.Desc{
		d.open, d.held, d.ready, d.accepted, d.rejected, d.msgIn, d.msgOut, d.bytesIn, d.bytesOut,
		d.closes, d.slow, d.dropped, d.rateLimited, d.undecodable, d.nodeQueueFull, d.panics, d.restarts, d.mailbox,
		d.bcastTime, d.bcastN, d.dirOps, d.dirErrs, d.roomsActive, d.tickLate, d.failovers,
		d.roomPanics, d.roomRestarts, d.roomFenced, d.roomStoreErrs,
		d.members, d.isolated, d.redisUp, d.redisOutages, d.drops, d.rejoins, d.resyncs, d.departures,
		d.laneSessions, d.laneFrames, d.laneLost, d.laneRefused,
	}
}
