// The chat page: join a room, chat, DM a member, and stay connected. All the
// connection work (typed messages, reconnecting with backoff, the state) is
// the browser client's, imported from the same server.
import { connect } from "/wsactor.js";

const $ = (id) => document.getElementById(id);

let client = null;
let me = null;              // {id, name} from the latest welcome
let dmTarget = null;        // {id, name} while a DM is being written
let countdown = 0;          // interval refreshing "reconnecting in Ns"
let lastState = "";
// The member list: the answer to "who", then every "presence" event in order.
// Events that come before the answer are set aside and applied after it.
const members = new Map();  // id → {id, name, user}
let listed = false;         // members holds an answer to "who"
let early = [];             // presence events waiting for that answer
let large = false;          // the room is too large for lists: only its count is known
let roomCount = 0;          // the room's size, from the latest presence event
let relistAt = 0;           // when "who" was last asked because lists came back
let relistTimer = 0;

// Prefill the form from ?room=&name=&token= and join at once if a room is given:
// a reload or a shared link lands in the room.
const params = new URLSearchParams(location.search);
$("name").value = params.get("name") || "";
$("room").value = params.get("room") || "lobby";
$("token").value = params.get("token") || "";

$("join").addEventListener("submit", (ev) => {
  ev.preventDefault();
  join($("room").value.trim(), $("name").value.trim(), $("token").value.trim());
});
$("say").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sendText();
});
$("leave").addEventListener("click", () => {
  if (!client || client.state === "closed") return;
  client.close(1000, "left");
  system("you left the room");
});

if (params.get("room")) join($("room").value.trim(), $("name").value.trim(), $("token").value.trim());

function join(room, name, token) {
  if (client) client.close(1000, "switching room");
  me = null;
  setTarget(null);
  members.clear();
  large = false;
  renderMembers();
  $("messages").replaceChildren();
  $("room-label").textContent = "#" + room;
  $("join").hidden = true;
  $("chat").hidden = false;
  const q = new URLSearchParams({ room });
  if (name) q.set("name", name);
  history.replaceState(null, "", "?" + q); // the token stays out of the address bar

  const url = `/ws/chat/${encodeURIComponent(room)}?name=${encodeURIComponent(name)}`;
  client = connect(url, {
    // Browsers fail a handshake whose offered subprotocols the server all
    // refused, so offer "bearer" only with a token (the chat's JWT mode
    // negotiates it). Without one, a cookie named "token" works too.
    protocols: token ? ["bearer", token] : [],
    // After every (re)connection. The room is in the URL, so reconnecting
    // re-joins it; ask who is there now.
    onOpen: (c) => {
      clearTimeout(relistTimer);
      listed = false;
      early = [];
      c.send("who");
    },
    onStateChange: (state, info, c) => renderState(c, state, info),
  });
  client.on("welcome", (m) => {
    const again = me !== null;
    me = { id: m.id, name: m.name };
    $("me").textContent = m.id;
    $("me").title = m.name;
    members.clear();
    members.set(m.id, { id: m.id, name: m.name, user: m.user });
    renderMembers();
    system(again ? `reconnected as ${m.name} (new id ${short(m.id)})` : `joined #${m.room} as ${m.name}`);
  });
  client.on("members", (m) => {
    members.clear();
    roomCount = m.count;
    large = !m.members; // too many to list: the count only
    for (const x of m.members || []) members.set(x.id, x);
    listed = true;
    const waiting = early;
    early = [];
    for (const ev of waiting) presence(ev, false);
    // After a reconnection every ID is new: a DM target from before is gone.
    if (dmTarget && !members.has(dmTarget.id)) setTarget(null);
    renderMembers();
  });
  client.on("presence", (m) => {
    if (!listed) {
      early.push(m);
      return;
    }
    presence(m, true);
    renderMembers();
  });
  client.on("said", (m) => line(m.id === me?.id ? "said mine" : "said", m.name, m.text));
  client.on("dm", (m) => line("dm", `${m.name} → you`, m.text));
  client.on("notice", (m) => line("notice", "notice", m.text));
  client.on("error", (m) => line("error", `error ${m.code}`, m.error));
}

// presence applies a presence event to the list: leaves first, then joins.
// In a large room the events carry only the count; when lists come back, the
// list held is out of date, so ask "who" again (at most every 5 s, in case the
// room hovers around the limit), setting events aside until the answer.
function presence(m, announce) {
  if (typeof m.count === "number") roomCount = m.count;
  if (!m.joins) {
    if (!large) members.clear();
    large = true;
    return;
  }
  if (large) {
    listed = false;
    early = [m];
    clearTimeout(relistTimer);
    relistTimer = setTimeout(() => {
      relistAt = Date.now();
      client.send("who");
    }, Math.max(0, relistAt + 5000 - Date.now()));
    return;
  }
  for (const x of m.leaves) {
    const had = members.get(x.id);
    if (!had) continue; // came and went between two events, or before our "who"
    members.delete(x.id);
    if (dmTarget && dmTarget.id === x.id) setTarget(null);
    if (announce) system(`${had.name} left`);
  }
  for (const x of m.joins) {
    const known = members.has(x.id);
    members.set(x.id, { id: x.id, name: x.name, user: x.user });
    if (announce && !known && x.id !== me?.id) system(`${x.name} joined`);
  }
}

function sendText() {
  const text = $("text").value;
  if (!text.trim() || !client) return;
  const ok = dmTarget ? client.send("dm", { to: dmTarget.id, text }) : client.send("say", { text });
  if (!ok) {
    system("not connected: the message was not sent");
    return;
  }
  if (dmTarget) line("dm mine", `you → ${dmTarget.name}`, text);
  $("text").value = "";
}

function renderState(c, state, info) {
  const el = $("state");
  el.dataset.state = state;
  el.textContent = c.stateText();
  clearInterval(countdown);
  if (state === "reconnecting") {
    countdown = setInterval(() => { el.textContent = c.stateText(); }, 250);
    // Once per loss, not once per failed attempt.
    if (lastState === "open") system(`connection lost (${info.code}${info.reason ? " " + info.reason : ""}), reconnecting`);
  }
  lastState = state;
  $("text").disabled = $("send").disabled = state !== "open";
  $("leave").disabled = state === "closed";
  if (state === "closed") {
    if (c === client && c.lastClose && c.lastClose.code !== 1000) {
      system(`closed: ${c.lastClose.code} ${c.lastClose.reason || ""}`);
    }
    $("join").hidden = false;
    $("join-btn").textContent = "Join again";
    members.clear(); // no longer a member: the list would go stale
    renderMembers();
  }
}

function renderMembers() {
  if (large) {
    $("count").textContent = String(roomCount);
    const li = document.createElement("li");
    li.className = "large";
    li.textContent = "too many to list";
    $("members").replaceChildren(li);
    return;
  }
  const list = [...members.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  $("count").textContent = String(list.length);
  $("members").replaceChildren(...list.map((m) => {
    const li = document.createElement("li");
    li.dataset.id = m.id;
    li.title = m.id + (m.user ? ` (user ${m.user})` : "");
    const name = document.createElement("span");
    name.textContent = m.name;
    const tag = document.createElement("span");
    tag.className = "tag";
    if (me && m.id === me.id) {
      li.className = "self";
      tag.textContent = "you";
    } else {
      tag.textContent = short(m.id);
      if (dmTarget && dmTarget.id === m.id) li.className = "target";
      li.addEventListener("click", () => setTarget(dmTarget && dmTarget.id === m.id ? null : m));
    }
    li.append(name, tag);
    return li;
  }));
}

function setTarget(m) {
  dmTarget = m ? { id: m.id, name: m.name } : null;
  const chip = $("dm-to");
  chip.hidden = !dmTarget;
  chip.replaceChildren();
  if (dmTarget) {
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "×";
    x.title = "back to the room";
    x.addEventListener("click", () => setTarget(null));
    chip.append(`DM to ${dmTarget.name}`, x);
    $("text").placeholder = `Direct message to ${dmTarget.name}`;
  } else {
    $("text").placeholder = "Say something";
  }
  renderMembers();
  $("text").focus();
}

function line(cls, who, text) {
  const li = document.createElement("li");
  li.className = cls;
  const w = document.createElement("span");
  w.className = "who";
  w.textContent = who + ": ";
  li.append(w, text); // text nodes: nothing a user types becomes markup
  append(li);
}

function system(text) {
  const li = document.createElement("li");
  li.className = "system";
  li.textContent = text;
  append(li);
}

function append(li) {
  const list = $("messages");
  list.append(li);
  li.scrollIntoView({ block: "nearest" });
}

// short shows the random middle of an ID (server.random.node), enough to tell members apart.
function short(id) {
  const parts = id.split(".");
  return (parts[1] || id).slice(0, 6);
}
