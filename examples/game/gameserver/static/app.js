// app.js — the page of wsactor's game example (examples/game): a lobby, and
// an arena drawn on a canvas from the server's state. No build step, no
// dependencies. The protocol is in examples/game/README.md.
//
// The connection is a plain WebSocket rather than wsactor.js, because
// reconnecting right needs the game's own rules at every attempt:
//   - which node to try: the node the page was playing on first, then the
//     other nodes of GET /api/peers in turn, one per failed attempt (a room on
//     a dead node moves to a survivor, which holds the seat);
//   - when an attempt has failed: a socket that opens is not yet a seat
//     (4503 "unavailable" comes after the open), so the backoff restarts on
//     a welcome, not on open; and a node that neither accepts nor refuses
//     (a dead host, not a dead process) is given up after CONNECT_TIMEOUT;
//   - what a close means: 4400, 4404, 4409 and 4410 end the game and say why
//     in the lobby; everything else (1001, 1006, 4503…) reconnects with the
//     seat's token.
//
// The page's state is on window.game, for the curious and for the tests.

const TICK_MS = 50; // the server simulates and sends the state at 20 Hz
const RENDER_DELAY_MS = 100; // draw this far in the past, between two states
const CONNECT_TIMEOUT_MS = 3000; // a handshake that takes longer: try the next node
const WELCOME_TIMEOUT_MS = 6000; // open, but no seat after this long: try again
const STALE_MS = 8000; // seated, but no message for this long: the connection is dead
const STALL_NOTICE_MS = 750; // seated, no state for this long: say the room is catching up
const BACKOFF_MIN_MS = 250; // reconnection delay: full jitter under a ceiling
const BACKOFF_MAX_MS = 3000; // that doubles per failed attempt up to this
const ROOMS_EVERY_MS = 1500; // the lobby's refresh of GET /api/rooms
const SESSION_KEY = "wsactor-game"; // sessionStorage: {token, room, name}
const NAME_KEY = "wsactor-game-name"; // localStorage: the last name typed
const PLAYER_RADIUS = 14;
const COIN_RADIUS = 9;
const COLORS = ["#4fc3f7", "#ff8a65", "#aed581", "#ba68c8", "#ffd54f", "#f06292", "#4db6ac", "#90a4ae"];
const KEYS = {
  ArrowLeft: [-1, 0], KeyA: [-1, 0], ArrowRight: [1, 0], KeyD: [1, 0],
  ArrowUp: [0, -1], KeyW: [0, -1], ArrowDown: [0, 1], KeyS: [0, 1],
};

const $ = (id) => document.getElementById(id);

// game is the page's state, read by the tests.
const game = {
  conn: "lobby", // lobby | connecting | playing | reconnecting
  node: "", // the welcome's node: the cluster address of the page's node
  base: location.origin, // the HTTP base URL of the node connected or being tried
  nodes: [location.origin], // every node's base URL: this page's first, then /api/peers
  welcome: null, // the last welcome
  welcomes: [], // every welcome: {at (Date.now()), node, room, seat, again}
  latest: null, // the last state message
  seat: -1,
  statesReceived: 0,
  stateRate: 0, // states received in the last second
  lastStateAt: 0, // Date.now() of the last state
  statesSinceWelcome: 0,
  firstStateAt: 0, // Date.now() of the first state after the last welcome
  inputsSent: 0,
  inputs: [], // the last inputs sent: [dx, dy]
  errors: [], // error envelopes received
  closes: [], // {code, reason, base, at} of every socket that ended
  attempts: 0, // failed attempts since the last welcome
  retryAt: 0, // Date.now() of the next attempt while reconnecting
  frames: 0, // frames drawn
  rendered: new Map(), // seat → {x, y} as last drawn
  lobbyMessage: "",
  me() { return this.latest?.players.find((p) => p.seat === this.seat) || null; },
  play: (want) => play(want), // {name, room?, token?}: what the lobby's buttons do
};
window.game = game;

// ---- session --------------------------------------------------------------

const session = {
  load() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION_KEY));
      if (s && typeof s.token === "string" && s.token !== "") return s;
    } catch { /* unreadable: none */ }
    return null;
  },
  save(s) { sessionStorage.setItem(SESSION_KEY, JSON.stringify(s)); },
  clear() { sessionStorage.removeItem(SESSION_KEY); },
};

// ---- nodes ----------------------------------------------------------------

// loadPeers adds GET /api/peers to the nodes to try; this page's node stays first.
async function loadPeers() {
  try {
    const r = await fetch("/api/peers", { cache: "no-store" });
    const list = await r.json();
    if (!Array.isArray(list)) return;
    const all = [location.origin, ...list.filter((u) => typeof u === "string").map((u) => u.replace(/\/+$/, ""))];
    game.nodes = [...new Set(all)];
  } catch { /* this page's node only */ }
}

function nextNode(base) {
  const i = game.nodes.indexOf(base);
  return game.nodes[(i + 1) % game.nodes.length];
}

function hostOf(base) {
  try { return new URL(base).host; } catch { return base; }
}

// ---- the connection -------------------------------------------------------

const net = {
  ws: null,
  want: null, // what to connect for: {name, room?, token?}; null in the lobby
  opened: false, // this socket opened
  seated: false, // this socket got its welcome
  leaving: false, // the player asked to leave
  timer: 0, // the pending attempt, or the handshake or welcome deadline
  lastMessageAt: 0, // performance.now() of the last message on this socket
};

// play connects for a seat: quick play (no room), a room by name, or the
// seat of a token.
function play(want) {
  clearTimeout(net.timer);
  dropSocket();
  net.want = want;
  net.leaving = false;
  game.attempts = 0;
  game.base = game.nodes.includes(game.base) ? game.base : location.origin;
  showArena(want.room || "");
  attempt();
}

function attempt() {
  clearTimeout(net.timer);
  const w = net.want;
  if (!w) return;
  const q = new URLSearchParams({ name: w.name });
  if (w.token) q.set("token", w.token);
  else if (w.room) q.set("room", w.room);
  const url = game.base.replace(/^http/, "ws") + "/ws/game?" + q;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    failed({ code: 0, reason: String(err.message || err) });
    return;
  }
  net.ws = ws;
  net.opened = net.seated = false;
  setConn("connecting");
  // A node that does not answer at all (a dead host drops packets; only a
  // dead process refuses at once) is given up after the deadline.
  net.timer = setTimeout(() => abandon(ws, "no answer"), CONNECT_TIMEOUT_MS);
  ws.onopen = () => {
    if (ws !== net.ws) return;
    net.opened = true;
    net.lastMessageAt = performance.now();
    clearTimeout(net.timer);
    net.timer = setTimeout(() => abandon(ws, "no seat in time"), WELCOME_TIMEOUT_MS);
  };
  ws.onmessage = (ev) => {
    if (ws !== net.ws) return;
    net.lastMessageAt = performance.now();
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m && typeof m === "object") receive(m);
  };
  ws.onclose = (ev) => {
    if (ws !== net.ws) return;
    closed({ code: ev.code, reason: ev.reason });
  };
}

// abandon gives up a socket that hangs and treats it as failed.
function abandon(ws, why) {
  if (ws !== net.ws) return;
  closed({ code: 0, reason: why });
}

// dropSocket closes the current socket without hearing from it again.
function dropSocket() {
  const ws = net.ws;
  net.ws = null;
  if (!ws) return;
  ws.onopen = ws.onmessage = ws.onclose = null;
  try { ws.close(1000); } catch { /* already closed */ }
}

// closed decides what a socket's end means: the lobby with a reason, or
// another attempt.
function closed({ code, reason }) {
  const wasSeated = net.seated;
  clearTimeout(net.timer);
  game.closes.push({ code, reason, base: game.base, at: Date.now() });
  dropSocket();
  net.seated = false;
  const final = finalClose(code, reason);
  if (final !== null) {
    session.clear();
    toLobby(final, net.leaving);
    return;
  }
  if (net.leaving) {
    session.clear();
    toLobby("You left the room.", true);
    return;
  }
  // A lost seat is tried again on the same node first; an attempt that got
  // no seat moves on to the next node.
  if (!wasSeated) game.base = nextNode(game.base);
  failed({ code, reason });
}

// failed schedules the next attempt after a jittered backoff.
function failed({ code, reason }) {
  game.attempts++;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (game.attempts - 1));
  const delay = Math.floor(Math.random() * ceiling);
  game.retryAt = Date.now() + delay;
  game.lastClose = { code, reason };
  setConn("reconnecting");
  net.timer = setTimeout(attempt, delay);
}

// finalClose returns the words for a close that ends the game, or null for
// one to reconnect after (see the close codes in README.md).
function finalClose(code, reason) {
  const why = reason.replace(/^[a-z_]+: /, "");
  switch (code) {
    case 4400:
      return reason.startsWith("bad_name") ? `That name cannot be used: ${why}.` : `The server refused the request: ${why}.`;
    case 4404:
      return "Your seat is gone: it expired, or your reconnection token is no longer valid. Join a room again.";
    case 4409:
      return `Room ${net.want?.room || ""} is full (8 players). Pick another room, or Quick play.`;
    case 4410:
      switch (reason) {
        case "left: left": return net.leaving ? "You left the room." : "You left the room (from another tab).";
        case "left: kicked": return "You were removed from the room: another tab or window took your seat.";
        case "seat_taken: a newer tab or window holds the seat": return "Another tab or window has your seat.";
        case "left: seat_expired": return "Your seat expired while you were away.";
        case "left: room_closed": return "The room closed.";
        case "left: room_failed": return "The room failed and could not be recovered. Join another room.";
        default: return `You are no longer in the room (${why}).`;
      }
  }
  return null;
}

function receive(m) {
  switch (m.type) {
    case "welcome": return welcomed(m);
    case "state": return stateReceived(m);
    case "error":
      game.errors.push(m);
      if (m.code === "room_moved") resendInputSoon();
      else $("game-msg").textContent = `server: ${m.code}: ${m.error || ""}`;
      return;
    case "notice": return toast(m.text);
  }
}

function welcomed(m) {
  clearTimeout(net.timer);
  net.seated = true;
  game.attempts = 0;
  game.retryAt = 0;
  game.welcome = m;
  game.statesSinceWelcome = 0;
  game.seat = m.seat;
  game.node = m.node;
  game.welcomes.push({ at: Date.now(), node: m.node, room: m.room, seat: m.seat, again: !!m.again, base: game.base });
  const name = net.want.name;
  const token = m.token || net.want.token;
  net.want = { name, token };
  session.save({ token, room: m.room, name, base: game.base });
  setArenaSize(m.width || 1000, m.height || 600);
  $("room-name").textContent = m.room;
  const invite = $("invite");
  invite.href = location.origin + "/?room=" + encodeURIComponent(m.room);
  invite.textContent = invite.href;
  resetStates(); // after a move the room may have gone back to its last snapshot
  setConn("playing");
  // The server keeps no direction across a reconnection or a move: say it again.
  sent = { dx: 0, dy: 0 };
  updateInput();
}

// ---- the lobby ------------------------------------------------------------

let roomsTimer = 0;
let roomsGen = 0; // the latest refresh: an older one that answers late is ignored

function toLobby(message = "", info = false) {
  clearTimeout(net.timer);
  dropSocket();
  net.want = null;
  net.leaving = false;
  game.seat = -1;
  game.latest = null;
  resetStates();
  held.clear();
  game.lobbyMessage = message;
  const el = $("lobby-msg");
  el.textContent = message;
  el.hidden = !message;
  el.classList.toggle("info", info);
  $("arena").hidden = true;
  $("lobby").hidden = false;
  setConn("lobby");
  refreshRooms();
}

function playerName() {
  const name = $("name").value.trim();
  localStorage.setItem(NAME_KEY, name);
  return name;
}

function randomRoomName() {
  const b = new Uint8Array(5);
  crypto.getRandomValues(b);
  return "room-" + [...b].map((x) => x.toString(36).padStart(2, "0")).join("").slice(0, 8);
}

async function refreshRooms() {
  clearTimeout(roomsTimer);
  const gen = ++roomsGen;
  if ($("lobby").hidden) return;
  let list = null;
  let error = "";
  try {
    const r = await fetch("/api/rooms", { cache: "no-store" });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    list = await r.json();
  } catch (err) {
    error = String(err.message || err);
  }
  if (gen !== roomsGen || $("lobby").hidden) return;
  if (list) showRooms(list);
  else $("rooms-status").textContent = `The room list is unavailable (${error}); Quick play still works.`;
  roomsTimer = setTimeout(refreshRooms, ROOMS_EVERY_MS);
}

function showRooms(list) {
  const rooms = (Array.isArray(list) ? list : []).slice().sort((a, b) => (a.room < b.room ? -1 : a.room > b.room ? 1 : 0));
  const body = $("rooms").tBodies[0];
  body.replaceChildren(...rooms.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.room = r.room;
    tr.dataset.players = r.players;
    const cells = [r.room, `${r.players}/${r.max}`, r.node];
    for (const [i, text] of cells.entries()) {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 2) td.className = "node";
      tr.append(td);
    }
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "join";
    b.textContent = r.players >= r.max ? "Full" : "Join";
    b.disabled = r.players >= r.max;
    b.onclick = () => play({ name: playerName(), room: r.room });
    td.append(b);
    tr.append(td);
    return tr;
  }));
  $("rooms-status").textContent = rooms.length ? "" : "No open rooms yet: Quick play or Create room opens one.";
}

// ---- the arena: states, interpolation, drawing ----------------------------

const canvas = $("canvas");
const ctx = canvas.getContext("2d");
let arena = { w: 1000, h: 600 };

function setArenaSize(w, h) {
  const dpr = window.devicePixelRatio || 1;
  if (arena.w === w && arena.h === h && canvas.width === Math.round(w * dpr)) return;
  arena = { w, h };
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
}

function showArena(room) {
  $("lobby").hidden = true;
  $("arena").hidden = false;
  $("room-name").textContent = room;
  $("scores").replaceChildren();
  $("game-msg").textContent = "";
  lastBoard = "";
  clearTimeout(roomsTimer);
  roomsGen++;
}

// The last states, oldest first, each placed on the local clock: the page
// draws RENDER_DELAY_MS in the past, between the two states around that
// moment. A state's time is its tick × TICK_MS plus an offset to the local
// clock, smoothed so that network jitter does not shake the dots.
let states = [];
let offset = null; // local ms − tick × TICK_MS
// renderTick is the last render time, in ticks: it never goes back. A late
// state raises offset by a tenth of its lateness, which can be more than a
// frame's time, and the dots would be drawn a little back.
let renderTick = -Infinity;

function resetStates() {
  states = [];
  offset = null;
  renderTick = -Infinity;
  pops = [];
}

function stateReceived(m) {
  if (!Array.isArray(m.players)) return;
  game.latest = m;
  game.statesReceived++;
  game.lastStateAt = Date.now();
  if (game.statesSinceWelcome++ === 0) game.firstStateAt = game.lastStateAt;
  const now = performance.now();
  arrivals.push(now);
  while (arrivals[0] < now - 1000) arrivals.shift();
  game.stateRate = arrivals.length;
  const last = states[states.length - 1];
  if (last) scored(last.players, m.players);
  // The room went back to a snapshot (it moved nodes), or it paused: start over.
  if (last && (m.tick <= last.tick || m.tick > last.tick + 40)) resetStates();
  const o = now - m.tick * TICK_MS;
  offset = offset === null ? o : offset + (o - offset) * 0.1;
  states.push({ tick: m.tick, players: new Map(m.players.map((p) => [p.seat, p])), items: Array.isArray(m.items) ? m.items : [] });
  if (states.length > 30) states.shift();
  $("tick").textContent = m.tick;
  $("rate").textContent = game.stateRate;
  updateBoard(m.players);
}

// arrivals are the performance.now() of the states of the last second: the
// tick line shows their count, 20 when all is well, fewer when the network
// or the room falls behind, none while the room moves to another node.
const arrivals = [];

// pops are the "+1"s rising from dots that scored: {seat, text, at}.
let pops = [];
const POP_MS = 800;

// scored adds a pop for every player whose score went up between two
// states, shown when the drawing (RENDER_DELAY_MS behind) gets there.
function scored(before, players) {
  const at = performance.now() + RENDER_DELAY_MS;
  for (const p of players) {
    const b = before.get(p.seat);
    if (b && p.score > b.score) pops.push({ seat: p.seat, text: `+${p.score - b.score}`, at });
  }
}

function drawPops(now, drawn) {
  pops = pops.filter((x) => now - x.at < POP_MS);
  for (const x of pops) {
    const pos = drawn.get(x.seat);
    if (!pos || now < x.at) continue;
    const f = (now - x.at) / POP_MS; // 0 → 1
    ctx.save();
    ctx.globalAlpha = 1 - f;
    ctx.font = "bold 16px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillStyle = "#ffd54f";
    ctx.shadowColor = "rgba(0,0,0,.8)";
    ctx.shadowBlur = 3;
    ctx.fillText(x.text, pos.x + 18, pos.y - PLAYER_RADIUS - 18 - 24 * f);
    ctx.restore();
  }
}

// sample returns the states around the render time and how far between them.
function sample(now) {
  if (!states.length) return null;
  const t = Math.max(renderTick, (now - RENDER_DELAY_MS - offset) / TICK_MS); // in ticks
  renderTick = t;
  let i = states.length - 1;
  while (i > 0 && states[i].tick > t) i--;
  const from = states[i];
  const to = states[Math.min(i + 1, states.length - 1)];
  const a = to === from ? 0 : Math.min(1, Math.max(0, (t - from.tick) / (to.tick - from.tick)));
  return { from, to, a };
}

function frame(now) {
  requestAnimationFrame(frame);
  if ($("arena").hidden) return;
  game.frames++;
  const dpr = canvas.width / arena.w;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  drawField();
  const s = sample(now);
  updateOverlay();
  if (!s) return;
  for (const c of s.from.items) drawCoin(c.x, c.y);
  const drawn = new Map();
  const mine = [];
  for (const [seat, p] of s.from.players) {
    const q = s.to.players.get(seat) || p;
    const pos = { x: p.x + (q.x - p.x) * s.a, y: p.y + (q.y - p.y) * s.a };
    drawn.set(seat, pos);
    if (seat === game.seat) mine.push([p, pos]);
    else drawDot(p, pos, false);
  }
  for (const [p, pos] of mine) drawDot(p, pos, true); // own dot on top
  drawPops(now, drawn);
  game.rendered = drawn;
}

function drawField() {
  ctx.fillStyle = "#0e1420";
  ctx.fillRect(0, 0, arena.w, arena.h);
  ctx.strokeStyle = "rgba(255,255,255,.04)";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let x = 50; x < arena.w; x += 50) { ctx.moveTo(x, 0); ctx.lineTo(x, arena.h); }
  for (let y = 50; y < arena.h; y += 50) { ctx.moveTo(0, y); ctx.lineTo(arena.w, y); }
  ctx.stroke();
}

function drawCoin(x, y) {
  ctx.beginPath();
  ctx.arc(x, y, COIN_RADIUS, 0, 2 * Math.PI);
  ctx.fillStyle = "#ffca28";
  ctx.fill();
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#ff8f00";
  ctx.stroke();
  ctx.beginPath();
  ctx.arc(x - 2.5, y - 2.5, 2.5, 0, 2 * Math.PI);
  ctx.fillStyle = "#fff8e1";
  ctx.fill();
}

function drawDot(p, pos, me) {
  ctx.save();
  ctx.globalAlpha = p.online ? 1 : 0.35;
  if (me) {
    ctx.beginPath();
    ctx.arc(pos.x, pos.y, PLAYER_RADIUS + 5, 0, 2 * Math.PI);
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
  }
  ctx.beginPath();
  ctx.arc(pos.x, pos.y, PLAYER_RADIUS, 0, 2 * Math.PI);
  ctx.fillStyle = COLORS[p.seat % COLORS.length];
  ctx.fill();
  if (!p.online) {
    ctx.setLineDash([4, 4]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#cfd8dc";
    ctx.stroke();
  }
  ctx.font = `${me ? "bold " : ""}13px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillStyle = "#ffffff";
  ctx.shadowColor = "rgba(0,0,0,.8)";
  ctx.shadowBlur = 3;
  const label = `${p.name} · ${p.score}${p.online ? "" : " (offline)"}`;
  ctx.fillText(label, pos.x, pos.y - PLAYER_RADIUS - (me ? 8 : 4));
  ctx.restore();
}

// updateOverlay says over the arena what the player waits for.
function updateOverlay() {
  let text = "";
  let lobbyButton = false;
  if (game.conn === "reconnecting") {
    const s = Math.max(0, Math.ceil((game.retryAt - Date.now()) / 1000));
    text = `Connection lost. Reconnecting to ${hostOf(game.base)} ${s > 0 ? `in ${s}s` : "now"}…`;
    lobbyButton = true;
  } else if (game.conn === "connecting") {
    text = game.welcome ? `Reconnecting to ${hostOf(game.base)}…` : `Joining on ${hostOf(game.base)}…`;
  } else if (game.conn === "playing" && (!game.latest || Date.now() - game.lastStateAt > STALL_NOTICE_MS)) {
    text = game.latest ? "Waiting for the room (it may be moving to another node)…" : "Waiting for the room…";
  }
  const el = $("overlay");
  if ((el.hidden ? "" : $("overlay-text").textContent) === text) return;
  $("overlay-text").textContent = text;
  $("overlay-lobby").hidden = !lobbyButton;
  el.hidden = !text;
}

// updateBoard lists the players, best first; offline ones stay, greyed,
// until their seat expires.
let lastBoard = "";
function updateBoard(players) {
  const sorted = players.slice().sort((a, b) => b.score - a.score || a.seat - b.seat);
  const key = JSON.stringify([game.seat, sorted.map((p) => [p.seat, p.name, p.score, p.online])]);
  if (key === lastBoard) return;
  lastBoard = key;
  $("scores").replaceChildren(...sorted.map((p) => {
    const li = document.createElement("li");
    li.dataset.seat = p.seat;
    li.dataset.online = p.online;
    li.dataset.score = p.score;
    li.classList.toggle("offline", !p.online);
    li.classList.toggle("me", p.seat === game.seat);
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = COLORS[p.seat % COLORS.length];
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = p.name + (p.seat === game.seat ? " (you)" : "");
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = p.online ? "online" : "offline";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = p.score;
    li.append(sw, who, status, score);
    return li;
  }));
}

// ---- input ----------------------------------------------------------------

// held is the set of movement keys down; the server gets the direction they
// make each time it changes (never per frame).
const held = new Set();
let sent = { dx: 0, dy: 0 }; // the direction the server has, or null if unknown
let resendTimer = 0;

function direction() {
  let dx = 0;
  let dy = 0;
  for (const k of held) {
    dx += KEYS[k][0];
    dy += KEYS[k][1];
  }
  return { dx: Math.sign(dx), dy: Math.sign(dy) };
}

function updateInput() {
  const d = direction();
  if (sent && sent.dx === d.dx && sent.dy === d.dy) return;
  if (!net.seated || !net.ws || net.ws.readyState !== WebSocket.OPEN) return; // sent after the welcome
  net.ws.send(JSON.stringify({ type: "input", dx: d.dx, dy: d.dy }));
  sent = d;
  game.inputsSent++;
  game.inputs.push([d.dx, d.dy]);
  if (game.inputs.length > 50) game.inputs.shift();
}

// resendInputSoon: the room was moving and dropped the input; say it again.
function resendInputSoon() {
  sent = null;
  clearTimeout(resendTimer);
  resendTimer = setTimeout(updateInput, 200);
}

function keyName(e) {
  return e.code in KEYS ? e.code : e.key in KEYS ? e.key : "";
}

function typing(e) {
  const t = e.target;
  return t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || (t instanceof HTMLElement && t.isContentEditable);
}

window.addEventListener("keydown", (e) => {
  const k = keyName(e);
  if (!k || $("arena").hidden || typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
  e.preventDefault(); // arrows would scroll
  held.add(k);
  updateInput();
});
window.addEventListener("keyup", (e) => {
  const k = keyName(e);
  if (!k) return;
  held.delete(k);
  updateInput();
});
// Keys released while the window has no focus never arrive: stop.
function releaseAll() {
  held.clear();
  updateInput();
}
window.addEventListener("blur", releaseAll);
document.addEventListener("visibilitychange", () => { if (document.hidden) releaseAll(); });

// ---- the status line ------------------------------------------------------

function setConn(state) {
  game.conn = state;
  showConn();
}

function showConn() {
  const el = $("conn");
  el.dataset.state = game.conn;
  switch (game.conn) {
    case "lobby": el.textContent = "not connected"; break;
    case "connecting": el.textContent = `connecting to ${hostOf(game.base)}…`; break;
    case "playing": el.textContent = "connected"; break;
    case "reconnecting": {
      const s = Math.max(0, Math.ceil((game.retryAt - Date.now()) / 1000));
      el.textContent = `reconnecting in ${s}s (attempt ${game.attempts})`;
      break;
    }
  }
  $("node").textContent = game.conn === "playing" ? game.node : game.conn === "lobby" ? "—" : hostOf(game.base);
  $("node").title = game.base;
}

let toastTimer = 0;
function toast(text) {
  const el = $("toast");
  el.textContent = String(text);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

// The watchdog: a seated connection that hears nothing for STALE_MS is dead
// even if the browser has not noticed (the state comes 20 times a second);
// and the countdown while reconnecting.
setInterval(() => {
  if (net.seated && performance.now() - net.lastMessageAt > STALE_MS) abandon(net.ws, "no state");
  if (game.conn === "reconnecting") showConn();
  // The state rate falls to 0 when no state comes (a room that moves).
  const now = performance.now();
  while (arrivals.length && arrivals[0] < now - 1000) arrivals.shift();
  game.stateRate = arrivals.length;
  $("rate").textContent = game.stateRate;
}, 250);

// Leaving the page (a navigation, a closed tab) ends the connection now, so
// that the others see the player offline: a page kept in the back/forward
// cache would otherwise keep it open. Coming back to a cached page
// reconnects to the seat.
window.addEventListener("pagehide", () => {
  clearTimeout(net.timer);
  dropSocket();
  net.seated = false;
});
window.addEventListener("pageshow", (e) => {
  if (!e.persisted || !net.want) return;
  game.attempts = 0;
  attempt();
});

// ---- wiring ---------------------------------------------------------------

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  play({ name: playerName() });
});
$("create").addEventListener("click", () => play({ name: playerName(), room: randomRoomName() }));
$("leave").addEventListener("click", () => {
  session.clear();
  if (net.seated && net.ws?.readyState === WebSocket.OPEN) {
    net.leaving = true; // the server closes with 4410 "left: left"
    net.ws.send(JSON.stringify({ type: "leave" }));
    clearTimeout(net.timer);
    net.timer = setTimeout(() => toLobby("You left the room.", true), 2000);
    return;
  }
  toLobby("You left the room.", true);
});
$("overlay-lobby").addEventListener("click", () => {
  session.clear();
  toLobby("You gave up your seat: it is held for a few seconds more, then freed.", true);
});

$("name").value = localStorage.getItem(NAME_KEY) || "";
requestAnimationFrame(frame);
const peers = loadPeers();
// ?room=NAME[&name=NAME] invites to a room; it is taken out of the address
// so that a reload does not follow it again. An invitation to another room
// than the seat this tab holds wins: the old seat expires.
const invitedQuery = new URLSearchParams(location.search);
const invited = { room: invitedQuery.get("room") || "", name: invitedQuery.get("name") };
if (location.search) history.replaceState(null, "", location.pathname);
let saved = session.load();
if (saved && invited.room && saved.room !== invited.room) {
  session.clear();
  saved = null;
}
if (saved) {
  // A reload, or a tab restored: back to the seat, on the node it was on
  // when that node is one of this game's (it may not be this page's node).
  $("name").value = saved.name || "";
  peers.then(() => {
    if (net.want || !session.load()) return; // the player moved on meanwhile
    game.base = game.nodes.includes(saved.base) ? saved.base : location.origin;
    play({ name: saved.name || "", token: saved.token });
    $("room-name").textContent = saved.room || "";
  });
} else if (invited.room) {
  // An invitation (the arena's link): that room at once.
  toLobby();
  if (invited.name !== null) $("name").value = invited.name;
  peers.then(() => { if (!net.want) play({ name: playerName(), room: invited.room }); });
} else {
  toLobby();
}
