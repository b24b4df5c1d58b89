// wsactor.js — the browser client for wsactor servers.
//
// A plain ES module with no dependencies and no build step. The Go package
// github.com/wsactor/wsactor/client/web embeds it and serves it
// (web.Handler()); import it from a page served by the same process:
//
//	<script type="module">
//	  import { connect } from "/wsactor.js";
//	  const chat = connect("/ws/chat/lobby?name=ann", {
//	    onOpen: (c) => c.send("who"),                // after every (re)connect: re-join here
//	    onStateChange: (state, info, c) => { status.textContent = c.stateText(); },
//	  });
//	  chat.on("said", (m) => show(m.name + ": " + m.text));
//	  chat.send("say", { text: "hi" });              // → {"type":"say","text":"hi"}
//	  const sum = await chat.request("calc.add", { A: 2, B: 40 }); // → 42
//	</script>
//
// It speaks wsactor's JSON envelope protocol (see wsactor.Router): a message
// is one JSON object whose "type" selects the handler and whose other fields
// are the payload, beside it; "req" is an optional correlation value. The
// server answers a request with {"type":"reply","req":..,"data":..} or with
// an error envelope {"type":"error","code":..,"error":..,"ref":..,"req":..}.
//
// The connection is kept up: when it is lost, the client reconnects after a
// delay drawn by exponential backoff with full jitter (uniformly random in
// [0, ceiling), the ceiling starting at minBackoff and doubling per failed
// attempt up to maxBackoff; the count restarts after a successful
// connection), so clients dropped together do not come back together. It
// calls onOpen after every successful (re)connection, which is where an
// application re-joins what it had joined; state kept on the server with the
// old connection (its ID, its groups) is gone.
//
// It does not reconnect after close() or after a close code that says
// retrying cannot help (isFinal; defaultIsFinal matches the Go client's
// client.DefaultFinalCode):
//
//   - final: 1000 normal closure (the server ended the session on purpose),
//     1002 protocol error, 1003 unsupported data, 1007 invalid data,
//     1008 policy violation (wsactor's "forbidden", "credentials expired",
//     "invalid credentials"), 1009 message too big,
//     1010 mandatory extension, and 3000–4999 (application codes: a kick
//     from an admin, a rejected room or name…). Reconnecting would repeat
//     the same refusal, or undo a decision the application made.
//   - reconnect: 1001 going away (server shutdown or restart, idle timeout),
//     1005, 1006 (network failure, or a refused upgrade: browsers hide the
//     HTTP status of a failed handshake, so a 401 or 403 looks like 1006
//     and is retried with backoff), 1011 internal error, 1012 service
//     restart, 1013 try again later (wsactor's "slow consumer": messages
//     were lost, so come back and catch up), 1014, and anything else.
//
// The state, for the page to show: "connecting", "open", "reconnecting"
// (stateText() says "reconnecting in Ns"), "closed" (for good; lastClose
// says why).
//
// Messages that are not JSON objects with a string "type" (plain text,
// binary data as an ArrayBuffer) reach onMessage as {type: "", raw: data}.
//
// Credentials that expire (a wsactor route with WithCredentialRefresh): give
// a token function, which is called for a fresh token before every attempt
// (offered as the subprotocol pair "bearer", token) and whenever the server
// asks for new credentials ({"type":"auth.refresh","deadline":..}); the
// client answers {"type":"auth.refresh","token":..} by itself. The
// protocol's messages never reach onMessage or on() handlers:
//
//	const chat = connect("/ws/chat/lobby", {
//	  token: async () => (await fetch("/api/token")).text(),
//	});
//
// If the token function fails (throws or rejects) before an attempt, the
// attempt counts as failed and the client retries after the backoff
// (onStateChange's info has {tokenError, delay}); an empty token offers
// none. If it fails (or returns "") when the server asks, the client warns
// on the console and does not answer: the server closes the connection at
// its deadline with 1008 "credentials expired", which is final, and that
// close's info (and lastClose) carries tokenError. A token the server
// refuses closes with 1008 "invalid credentials" (or "forbidden" if the new
// claims fail the route's permissions). refresh() sends a token unasked.

/** Defaults of the connect options, in milliseconds. */
export const DEFAULTS = Object.freeze({
  minBackoff: 100,
  maxBackoff: 10000,
  requestTimeout: 10000,
});

/**
 * defaultIsFinal reports whether a close with this code ends the client
 * instead of reconnecting; see the module comment for the list.
 */
export function defaultIsFinal(code) {
  switch (code) {
    case 1000: case 1002: case 1003: case 1007: case 1008: case 1009: case 1010:
      return true;
  }
  return code >= 3000 && code <= 4999;
}

/**
 * backoffDelay returns the wait before reconnection attempt n (1 for the
 * first after a loss): uniformly random in [0, ceiling), where the ceiling is
 * min·2^(n-1) capped at max ("full jitter"). random is Math.random by default.
 */
export function backoffDelay(n, min, max, random = Math.random) {
  const ceiling = Math.min(max, min * 2 ** Math.max(0, n - 1));
  return ceiling > 0 ? Math.floor(random() * ceiling) : 0;
}

/**
 * RequestError is how a request() fails: an error envelope that answered it
 * (code is the server's, such as "unknown_type" or an application code), or
 * one of the client's own codes: "timeout", "disconnected", "not_open",
 * "closed".
 */
export class RequestError extends Error {
  constructor(code, message, envelope = null) {
    super(message || code);
    this.name = "RequestError";
    this.code = code;
    this.envelope = envelope; // the error envelope, or null for the client's own codes
  }
}

/** connect opens a connection and keeps it up; see Client. */
export function connect(url, options = {}) {
  return new Client(url, options);
}

/**
 * Client is one logical connection to a wsactor server, across
 * reconnections. Make one with connect(url, options):
 *
 *   url            string or function returning one: ws(s):// or a path
 *                  ("/ws/chat/lobby"), resolved against the page's location.
 *                  A function is called before every attempt.
 *   protocols      subprotocols to offer (or a function returning them), such
 *                  as ["chat.v1"], or ["bearer", token] for a wsactor route
 *                  with auth.JWT and a token that never changes.
 *                  Offer none to a server that negotiates none: browsers fail
 *                  a handshake whose offered subprotocols were all refused.
 *   token          a function returning the token (or a Promise of it),
 *                  called before every attempt and whenever the server asks
 *                  for new credentials (see the module comment); "bearer",
 *                  token is offered after protocols, so leave "bearer" out of
 *                  those. A string is offered as it is on every attempt, and
 *                  the server's asks then reach onMessage unanswered.
 *   onOpen(c)      after every successful (re)connection: (re-)join here.
 *   onMessage(m, c) every message, parsed: {type, ...fields}.
 *   onStateChange(state, info, c)  on every state change; info holds
 *                  {code, reason, wasClean} after a close and {delay} when
 *                  reconnecting.
 *   minBackoff, maxBackoff  bounds of the reconnection delay, in ms
 *                  (defaults 100 and 10000).
 *   requestTimeout how long request() and refresh() wait for their answer,
 *                  in ms (10000).
 *   isFinal(code, reason)  whether a close ends the client (defaultIsFinal).
 */
export class Client {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...DEFAULTS, isFinal: defaultIsFinal };
    for (const [k, v] of Object.entries(options)) if (v !== undefined) this.options[k] = v;
    /** "connecting" | "open" | "reconnecting" | "closed" */
    this.state = "connecting";
    /** the last close: {code, reason, wasClean}, or null */
    this.lastClose = null;
    /** when the pending reconnection attempt starts (Date.now() ms), or 0 */
    this.retryAt = 0;
    /** failed attempts since the last successful connection */
    this.attempts = 0;

    this._ws = null;
    this._conn = null; // the connection's credential-refresh state: see _dial
    this._timer = 0;
    this._closed = false; // for good: no more reconnecting
    this._byApp = false; // close() was called
    this._handlers = new Map(); // type → Set of handlers
    this._pending = new Map(); // req → {resolve, reject, timer}
    this._nextReq = 1;
    this._online = () => { if (this.state === "reconnecting") this.retry(); };
    if (typeof window !== "undefined") window.addEventListener("online", this._online);
    this._open();
  }

  /** stateText is the state for people: "reconnecting in 3s", "closed (4000 kicked)". */
  stateText() {
    switch (this.state) {
      case "reconnecting": {
        const s = Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000));
        return `reconnecting in ${s}s`;
      }
      case "closed": {
        const c = this.lastClose;
        if (!c || this._byApp) return "closed";
        return `closed (${c.code}${c.reason ? " " + c.reason : ""})`;
      }
      default:
        return this.state;
    }
  }

  /**
   * send sends {"type": type, ...payload} if the connection is open and
   * returns whether it did. Nothing is queued while disconnected.
   */
  send(type, payload = {}) {
    checkType(type);
    return this._write(Object.assign({ type }, payload, { type }));
  }

  /**
   * request sends {"type": type, "req": <fresh number>, ...payload} and
   * returns a Promise of the matching reply's data; it rejects with a
   * RequestError for the matching error envelope, a timeout, or a lost
   * connection.
   */
  request(type, payload = {}, { timeout = this.options.requestTimeout } = {}) {
    checkType(type);
    return new Promise((resolve, reject) => {
      if (this.state !== "open") {
        reject(new RequestError(this._closed ? "closed" : "not_open", `not connected (${this.state})`));
        return;
      }
      const req = this._nextReq++;
      const timer = setTimeout(() => {
        this._pending.delete(req);
        reject(new RequestError("timeout", `no answer to ${type} within ${timeout} ms`));
      }, timeout);
      this._pending.set(req, { resolve, reject, timer });
      if (!this._write(Object.assign({ type }, payload, { type, req }))) {
        clearTimeout(timer);
        this._pending.delete(req);
        reject(new RequestError("not_open", "not connected"));
      }
    });
  }

  /**
   * refresh sends a new token from the token function now, without waiting
   * for the server to ask (ahead of the current token's expiry, or after the
   * user's claims changed), and returns a Promise of the expiry the server
   * acknowledged: an RFC 3339 string, or null for credentials that never
   * expire. It rejects with a RequestError: "not_open" or "closed", "token"
   * (the token function failed; the error is in .cause), "disconnected" (the
   * connection was lost first, as when the server refuses the token with
   * 1008), or "timeout" (a route without WithCredentialRefresh never
   * answers).
   */
  refresh({ timeout = this.options.requestTimeout } = {}) {
    return new Promise((resolve, reject) => {
      if (typeof this.options.token !== "function") {
        reject(new TypeError("wsactor: refresh needs a token function"));
        return;
      }
      if (this.state !== "open") {
        reject(new RequestError(this._closed ? "closed" : "not_open", `not connected (${this.state})`));
        return;
      }
      const conn = this._conn;
      let n = 0, settled = false;
      const timer = setTimeout(() => {
        settled = true;
        conn.waiters.delete(n);
        reject(new RequestError("timeout", `no acknowledgement of the new credentials within ${timeout} ms`));
      }, timeout);
      this._sendToken(conn).then((sent) => {
        n = sent;
        if (!settled) conn.waiters.set(n, { resolve, reject, timer });
      }, (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /**
   * on registers handler(msg, client) for messages of this type ("said",
   * "error"…) and returns a function that removes it. Replies and errors
   * that answer a request() go to its Promise instead.
   */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  /** retry reconnects now instead of waiting for the backoff delay. */
  retry() {
    if (this.state !== "reconnecting") return;
    clearTimeout(this._timer);
    this._open();
  }

  /**
   * close ends the connection for good (1000 by default; code must be 1000
   * or 3000–4999, as for WebSocket.close) and stops reconnecting.
   */
  close(code = 1000, reason = "") {
    if (code !== 1000 && !(code >= 3000 && code <= 4999)) throw new RangeError("wsactor: close code must be 1000 or 3000-4999");
    if (this._closed) return;
    this._closed = this._byApp = true;
    clearTimeout(this._timer);
    if (typeof window !== "undefined") window.removeEventListener("online", this._online);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close(code, reason);
    }
    this._failPending("closed", "client closed");
    this._conn = null;
    this.lastClose = { code, reason, wasClean: true };
    this._setState("closed", this.lastClose);
  }

  _open() {
    this._timer = 0;
    this.retryAt = 0;
    const token = this.options.token;
    if (typeof token !== "function") {
      this._dial(token);
      return;
    }
    this._setState("connecting", {});
    fetchToken(token, false).then((t) => {
      if (!this._closed) this._dial(t, true);
    }, (err) => {
      if (!this._closed) this._retryLater({ tokenError: err });
    });
  }

  // _dial opens a WebSocket that offers token, if any.
  _dial(token, connecting = false) {
    let ws;
    try {
      const p = resolve(this.options.protocols);
      const protocols = p == null ? [] : Array.isArray(p) ? [...p] : [p];
      if (token) protocols.push("bearer", token);
      ws = new WebSocket(absoluteURL(resolve(this.url)), protocols);
    } catch (err) {
      // A malformed URL or subprotocol: retrying cannot help.
      this._closed = true;
      this.lastClose = { code: 0, reason: String(err && err.message || err), wasClean: false };
      this._setState("closed", this.lastClose);
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    // Refreshes on this connection: tokens sent and acknowledged (the
    // server acknowledges valid ones in order and closes on an invalid
    // one, so the n-th auth.refreshed answers the n-th token), refresh()
    // calls awaiting theirs, the tail of the one-at-a-time queue of token
    // fetches, and why the last ask went unanswered.
    const conn = { ws, sent: 0, acked: 0, waiters: new Map(), queue: Promise.resolve(), tokenError: null };
    this._conn = conn;
    if (!connecting) this._setState("connecting", {});
    ws.onopen = () => {
      this.attempts = 0;
      this._setState("open", { protocol: ws.protocol });
      this._call(this.options.onOpen, this);
    };
    ws.onmessage = (ev) => this._receive(ev.data, conn);
    ws.onclose = (ev) => this._lost(ev, conn);
  }

  _lost(ev, conn) {
    this._ws = null;
    this._conn = null;
    const info = { code: ev.code, reason: ev.reason, wasClean: ev.wasClean };
    if (conn.tokenError) info.tokenError = conn.tokenError;
    this.lastClose = info;
    this._failPending("disconnected", `connection lost (${ev.code})`, conn);
    if (this._closed || this.options.isFinal(ev.code, ev.reason)) {
      this._closed = true;
      if (typeof window !== "undefined") window.removeEventListener("online", this._online);
      this._setState("closed", info);
      return;
    }
    this._retryLater(info);
  }

  // _retryLater schedules the next attempt after the backoff delay.
  _retryLater(info) {
    this.attempts++;
    const delay = backoffDelay(this.attempts, this.options.minBackoff, this.options.maxBackoff);
    this.retryAt = Date.now() + delay;
    this._timer = setTimeout(() => this._open(), delay);
    this._setState("reconnecting", { ...info, delay });
  }

  // _sendToken fetches a token and sends it on conn, one at a time so that
  // a token fetched later never overtakes an earlier one. It returns a
  // Promise of the token's number on conn.
  _sendToken(conn) {
    const sent = conn.queue.then(() => fetchToken(this.options.token, true).catch((err) => {
      const e = new RequestError("token", "token: " + String(err && err.message || err));
      e.cause = err;
      throw e;
    })).then((token) => {
      if (this._conn !== conn || conn.ws.readyState !== WebSocket.OPEN) {
        throw new RequestError("disconnected", "connection lost before the new credentials were sent");
      }
      conn.ws.send(JSON.stringify({ type: "auth.refresh", token }));
      return ++conn.sent;
    });
    conn.queue = sent.catch(() => {});
    return sent;
  }

  // _refreshMessage handles the server's side of the credential-refresh
  // protocol.
  _refreshMessage(msg, conn) {
    if (msg.type === "auth.refresh") {
      this._sendToken(conn).catch((err) => {
        if (this._conn !== conn) return; // lost meanwhile: nothing left to refresh
        conn.tokenError = err.cause || err;
        console.warn("wsactor: could not answer the server's request for new credentials; it closes the connection at", msg.deadline, err);
      });
      return;
    }
    conn.acked++;
    conn.tokenError = null;
    const w = conn.waiters.get(conn.acked);
    if (!w) return;
    conn.waiters.delete(conn.acked);
    clearTimeout(w.timer);
    w.resolve(typeof msg.expires === "string" ? msg.expires : null);
  }

  _receive(data, conn) {
    let msg = null;
    if (typeof data === "string") {
      try { msg = JSON.parse(data); } catch { msg = null; }
    }
    if (msg === null || typeof msg !== "object" || Array.isArray(msg) || typeof msg.type !== "string") {
      msg = { type: "", raw: data };
    }
    if ((msg.type === "auth.refresh" || msg.type === "auth.refreshed") && typeof this.options.token === "function") {
      this._refreshMessage(msg, conn);
      return;
    }
    if ((msg.type === "reply" || msg.type === "error") && this._pending.has(msg.req)) {
      const p = this._pending.get(msg.req);
      this._pending.delete(msg.req);
      clearTimeout(p.timer);
      if (msg.type === "reply") p.resolve(msg.data);
      else p.reject(new RequestError(msg.code || "error", msg.error || msg.code, msg));
      return;
    }
    this._call(this.options.onMessage, msg, this);
    for (const h of this._handlers.get(msg.type) || []) this._call(h, msg, this);
  }

  _write(obj) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  _failPending(code, message, conn = this._conn) {
    for (const [req, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError(code, message));
      this._pending.delete(req);
    }
    for (const [n, w] of conn ? conn.waiters : []) {
      clearTimeout(w.timer);
      w.reject(new RequestError(code, message));
      conn.waiters.delete(n);
    }
  }

  _setState(state, info) {
    this.state = state;
    this._call(this.options.onStateChange, state, info, this);
  }

  // _call runs application code; a throwing callback is reported and does
  // not break the client.
  _call(f, ...args) {
    if (typeof f !== "function") return;
    try {
      f(...args);
    } catch (err) {
      if (typeof reportError === "function") reportError(err);
      else console.error(err);
    }
  }
}

function checkType(type) {
  if (typeof type !== "string" || type === "") throw new TypeError("wsactor: message type must be a non-empty string");
}

function resolve(v) {
  return typeof v === "function" ? v() : v;
}

// fetchToken calls the token function. An empty token (or null) offers none
// at a handshake, and is a failure when the server asks for new credentials.
async function fetchToken(token, required) {
  const t = await token();
  if (t == null || t === "") {
    if (required) throw new Error("wsactor: the token function returned no token");
    return "";
  }
  if (typeof t !== "string") throw new TypeError("wsactor: the token function must return a string");
  return t;
}

// absoluteURL turns a path or an http(s) URL into the ws(s) URL WebSocket wants.
function absoluteURL(url) {
  if (typeof location === "undefined") return url;
  const u = new URL(url, location.href);
  if (u.protocol === "http:") u.protocol = "ws:";
  if (u.protocol === "https:") u.protocol = "wss:";
  return u.href;
}
