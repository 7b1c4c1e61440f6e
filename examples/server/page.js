"use strict";
// State: the user (from ?user=, else remembered in localStorage) and the
// current session (in the URL's fragment, so a reload keeps it). The
// current session may be a version (a fork) inside the chat root, which is
// the one the list shows.
const $ = (s) => document.querySelector(s);
let user = new URLSearchParams(location.search).get("user") || localStorage.getItem("turnkeep-user") || "guest";
let current = decodeURIComponent(location.hash.slice(1));
let root = current;
let sending = false;
let poll = 0;

async function api(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: { "X-Turnkeep-User": user, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) {}
    throw new Error(msg);
  }
  return r;
}

function showError(e) { $("#error").textContent = e ? String(e.message || e) : ""; }

function button(text, className, title, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.className = className;
  b.title = title;
  b.onclick = onclick;
  return b;
}

function setCurrent(id) {
  current = id;
  history.replaceState(null, "", location.pathname + location.search + (id ? "#" + encodeURIComponent(id) : ""));
}

// highlight marks the chat of the current session in the list.
function highlight() {
  for (const li of document.querySelectorAll("#sessions li")) {
    li.className = li.dataset.id === current || li.dataset.id === root ? "current" : "";
  }
}

// loadSessions lists the user's chats. A fork of a listed session is a
// version inside it, reached with the "< 1/2 >" beside its turn, and not
// listed on its own.
async function loadSessions() {
  const { sessions: all } = await (await api("GET", "/api/sessions?limit=200")).json();
  const listed = new Set(all.map((s) => s.id));
  const sessions = all.filter((s) => !(s.fork_of && listed.has(s.fork_of.session_id)));
  const ul = $("#sessions");
  ul.replaceChildren();
  for (const s of sessions) {
    const li = document.createElement("li");
    li.dataset.id = s.id;
    const title = document.createElement("span");
    title.textContent = s.title || "New chat";
    title.title = s.turn_count + " turns, updated " + new Date(s.updated_at).toLocaleString();
    const del = document.createElement("button");
    del.textContent = "✕";
    del.title = "Delete this chat";
    del.onclick = async (ev) => {
      ev.stopPropagation();
      if (!confirm("Delete this chat?")) return;
      try {
        await api("DELETE", "/api/sessions/" + encodeURIComponent(s.id));
        if (s.id === current || s.id === root) select(""); // with its versions
        await loadSessions();
      } catch (e) { showError(e); }
    };
    li.append(title, del);
    li.onclick = () => select(s.id);
    ul.append(li);
  }
  highlight();
  if (!current && sessions.length) select(sessions[0].id);
  if (!current) renderTurns([]);
}

function select(id) {
  setCurrent(id);
  root = id;
  highlight();
  showError(null);
  loadHistory().catch(showError);
}

// turnElement shows one turn: the user's message and the answer. A turn
// of the history also gets its versions ("< 2/3 >") and the buttons that
// make a new one: Edit (the message) and Regenerate (the answer).
function turnElement(t) {
  const div = document.createElement("div");
  div.className = "turn";
  div.dataset.turnId = t.id;
  div.dataset.complete = String(t.complete);
  const u = document.createElement("div");
  u.className = "msg user";
  u.textContent = t.user;
  const a = document.createElement("div");
  a.className = "msg assistant";
  a.textContent = t.answer;
  div.append(u);
  if (t.first || t.fork) { // else the turn before it is not known
    const acts = document.createElement("div");
    acts.className = "actions of-user";
    if (t.versions) {
      const v = t.versions, n = v.sessions.length;
      const nav = document.createElement("span");
      nav.className = "versions";
      const prev = button("‹", "prev", "Previous version", () => select(v.sessions[v.index - 1]));
      const next = button("›", "next", "Next version", () => select(v.sessions[v.index + 1]));
      prev.disabled = v.index === 0;
      next.disabled = v.index === n - 1;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = (v.index + 1) + "/" + n;
      nav.append(prev, count, next);
      acts.append(nav);
    }
    acts.append(button("Edit", "edit", t.fork ? "Edit this message: a new version from here" : "Edit this message: a new chat",
      () => startEdit(div, u, t)));
    const again = document.createElement("div");
    again.className = "actions of-answer";
    again.append(button("Regenerate", "regenerate", "Ask for another answer: a new version", () => newVersion(t, t.user)));
    div.append(acts, a, again);
  } else {
    div.append(a);
  }
  return div;
}

// startEdit turns the user's message u of turn t into a box to edit it.
function startEdit(div, u, t) {
  if (sending || div.querySelector(".editor")) return;
  const ed = document.createElement("div");
  ed.className = "editor";
  const ta = document.createElement("textarea");
  ta.rows = 2;
  ta.value = t.user;
  const save = button("Save", "save", "Send the edited message", () => {
    const text = ta.value.trim();
    if (text && text !== t.user) newVersion(t, text);
  });
  const cancel = button("Cancel", "cancel", "Keep the message", () => ed.replaceWith(u));
  ed.append(ta, save, cancel);
  u.replaceWith(ed);
  ta.focus();
}

function renderTurns(turns) {
  const box = $("#messages");
  box.replaceChildren();
  if (!turns.length) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = current ? "No messages yet." : "Start a chat: type below.";
    box.append(p);
  }
  for (const t of turns) box.append(turnElement(t));
  box.scrollTop = box.scrollHeight;
}

// loadHistory shows the newest turns of the current session. An answer
// still being written (by this server or another) is shown as far as it is
// stored, and reloaded until it is complete; one older than two minutes was
// cut short.
async function loadHistory() {
  clearTimeout(poll);
  if (!current) { renderTurns([]); return; }
  const id = current;
  const r = await api("GET", "/api/sessions/" + encodeURIComponent(id) + "/history?newest_first=true&limit=50");
  const { turns, root: r0 } = await r.json();
  if (id !== current || sending) return;
  root = r0;
  highlight();
  turns.reverse();
  renderTurns(turns);
  const last = turns[turns.length - 1];
  if (last && !last.complete) {
    if (Date.now() - new Date(last.time).getTime() < 120000) {
      poll = setTimeout(() => loadHistory().catch(showError), 700);
    } else {
      $("#messages").lastChild.classList.add("interrupted");
    }
  }
}

// send stores the message and reads the answer as server-sent events from
// the POST's response (EventSource cannot POST).
async function send(text) {
  await answering(async () => {
    if (!current) {
      const s = await (await api("POST", "/api/sessions", {})).json();
      setCurrent(s.id);
      root = s.id;
    }
    const box = $("#messages");
    if (box.querySelector(".note")) box.replaceChildren();
    const el = turnElement({ id: "", user: text, answer: "", complete: false });
    box.append(el);
    box.scrollTop = box.scrollHeight;
    const r = await api("POST", "/api/sessions/" + encodeURIComponent(current) + "/messages", { content: text });
    $("#input").value = "";
    loadSessions().catch(showError); // the new session, or its new title
    return readAnswer(r, el);
  });
}

// newVersion says text as a new version of turn t: in a fork of the
// session at the turn before t (or, for a first turn, in a new chat). The
// view shows the new version in place of t and the turns after it, then
// the version's session, where "< n/n >" shows beside it.
async function newVersion(t, text) {
  await answering(async () => {
    const old = [...$("#messages").children].find((e) => e.dataset.turnId === t.id);
    if (!old) throw new Error("the turn is no longer shown");
    while (old.nextSibling) old.nextSibling.remove();
    const el = turnElement({ id: "", user: text, answer: "", complete: false });
    old.replaceWith(el);
    const at = t.fork ? t.fork.session_id : current;
    const body = t.fork ? { after: t.fork.turn_id, content: text } : { content: text };
    const r = await api("POST", "/api/sessions/" + encodeURIComponent(at) + "/versions", body);
    return readAnswer(r, el);
  });
}

// answering runs f, which streams an answer, with the send button off and
// the history's polling stopped; then it shows the conversation as stored,
// with the turn's versions, unless f reports an answer cut short (shown
// so, with its error).
async function answering(f) {
  if (sending) return;
  sending = true;
  clearTimeout(poll);
  $("#send").disabled = true;
  showError(null);
  let reload = true;
  try {
    reload = await f();
  } catch (e) {
    showError(e);
  } finally {
    sending = false;
    $("#send").disabled = false;
    loadSessions().catch(showError);
    if (reload) loadHistory().catch(showError);
  }
}

// readAnswer reads the events of an answer (see the server's sendMessage)
// into the turn element el, and reports whether it is complete. The turn
// event names the session the turn is in, which becomes the current one.
async function readAnswer(r, el) {
  let complete = false;
  const box = $("#messages");
  const answer = el.querySelector(".assistant");
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      const d = data ? JSON.parse(data) : {};
      if (event === "turn") {
        el.dataset.turnId = d.turn_id;
        if (d.session_id !== current) setCurrent(d.session_id);
      } else if (event === "delta") { answer.textContent += d.text; box.scrollTop = box.scrollHeight; }
      else if (event === "done") {
        el.dataset.complete = String(d.complete);
        complete = d.complete;
        if (d.error) { el.classList.add("interrupted"); showError(d.error); }
      }
    }
  }
  return complete;
}

$("#form").onsubmit = (ev) => {
  ev.preventDefault();
  const text = $("#input").value.trim();
  if (text && !sending) send(text);
};
$("#input").onkeydown = (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("#form").requestSubmit(); }
};
$("#new").onclick = () => { select(""); $("#input").focus(); };
$("#user").value = user;
$("#user").onchange = () => {
  user = $("#user").value.trim() || "guest";
  localStorage.setItem("turnkeep-user", user);
  const u = new URL(location.href);
  u.searchParams.set("user", user);
  u.hash = "";
  history.replaceState(null, "", u);
  current = "";
  loadSessions().catch(showError);
};
$("#forget").onclick = async () => {
  if (!confirm("Delete every chat of " + user + "?")) return;
  try {
    await api("DELETE", "/api/users/" + encodeURIComponent(user));
    select("");
    await loadSessions();
  } catch (e) { showError(e); }
};
localStorage.setItem("turnkeep-user", user);
const initial = current;
loadSessions().then(() => { if (initial) select(initial); }).catch(showError);
