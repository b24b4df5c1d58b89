package actors

// A MailboxHook sees every message for a connection that is not one of the
// runtime's own (data frames, sends, closes, timer ticks), on the
// connection's actor goroutine, before the handler's Receive does, and
// reports whether it consumed the message. Packages built on connections use
// it for their own protocol: package rooms handles a room's answers and the
// end of a room its player is attached to. A hook that handles msg returns
// handled and what the handler's Receive gets in its place (nil: nothing).
// Hooks run in the order added; the first that handles msg ends the chain.
type MailboxHook func(c *Conn, msg any) (replacement any, handled bool)

// AddMailboxHook installs h on every connection of the runtime. Call it
// before serving.
func (rt *Runtime) AddMailboxHook(h MailboxHook) { rt.hooks = append(rt.hooks, h) }

// hooked runs the hooks on msg: it returns what Receive should get, and
// whether anything should.
func (rt *Runtime) hooked(c *Conn, msg any) (any, bool) {
	for _, h := range rt.hooks {
		if r, handled := h(c, msg); handled {
			return r, r != nil
		}
	}
	return msg, true
}

// A CloseHook is told that a connection has ended, on its actor goroutine,
// after its handler's OnClose.
type CloseHook func(c *Conn)

// AddCloseHook installs h on every connection of the runtime. Call it
// before serving.
func (rt *Runtime) AddCloseHook(h CloseHook) { rt.closeHooks = append(rt.closeHooks, h) }
