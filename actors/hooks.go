package actors

// A MailboxHook sees every message for a connection that is not one of the
// runtime's own (data frames, sends, closes, timer ticks), on the
// connection's actor goroutine, before the handler's Receive does, and
// reports whether it consumed the message. Packages built on connections use
// it for their own protocol: package rooms handles a room's answers and the
// end of a room its player is attached to. Hooks run in the order added.
type MailboxHook func(c *Conn, msg any) (consumed bool)

// AddMailboxHook installs h on every connection of the runtime. Call it
// before serving.
func (rt *Runtime) AddMailboxHook(h MailboxHook) { rt.hooks = append(rt.hooks, h) }

// hooked runs the hooks on msg and reports whether one consumed it.
func (rt *Runtime) hooked(c *Conn, msg any) bool {
	for _, h := range rt.hooks {
		if h(c, msg) {
			return true
		}
	}
	return false
}
