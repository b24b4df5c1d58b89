package wsactor

// RoutesOf returns how many servers on other nodes s keeps an outbox for.
func RoutesOf(s *Server) int { return s.rt.Routes() }

// PruneRoutes drops s's outboxes to departed nodes that are idle.
func PruneRoutes(s *Server) { s.rt.PruneRoutes() }
