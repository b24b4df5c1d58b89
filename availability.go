package wsactor

// A server can be taken out of service for a while without shutting down:
// a cluster node does so while its peers cannot see it (see package cluster),
// since a client of a node cut off from its cluster would silently miss what
// the other nodes send it.

// suspension is why the server refuses upgrades while suspended.
type suspension struct{ reason string }

// Suspend takes the server out of service: upgrades are refused with 503 and
// reason, and every connection, open or opening, is closed with code and
// reason after what is already queued for it (each gets OnClose). Resume puts
// the server back. Clients see the close code and reconnect, typically to
// another node behind the same address; use StatusServiceRestart (1012) for
// that meaning, or StatusTryAgainLater (1013).
func (s *Server) Suspend(code StatusCode, reason string) {
	s.suspended.Store(&suspension{reason: reason})
	s.rt.Refuse(code, reason)
}

// Resume ends Suspend: the server accepts upgrades again.
func (s *Server) Resume() {
	s.rt.Admit()
	s.suspended.Store(nil)
}

// Ready reports whether the server accepts upgrades: it is neither suspended
// nor shutting down.
func (s *Server) Ready() bool {
	return s.suspended.Load() == nil && !s.shuttingDown.Load()
}
