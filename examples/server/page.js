"use strict";
// State: the user (from ?user=, else remembered in localStorage) and the
// current session (in the URL's fragment, so a reload keeps it).
const $ = (s) => document.querySelector(s);
let user = new URLSearchParams(location.search).get("user") || localStorage.getItem("turnkeep-user") || "guest";
let current = decodeURIComponent(location.hash.slice(1));
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

async function loadSessions() {
  const { sessions } = await (await api("GET", "/api/sessions")).json();
  const ul = $("#sessions");
  ul.replaceChildren();
  for (const s of sessions) {
    const li = document.createElement("li");
    li.dataset.id = s.id;
    li.className = s.id === current ? "current" : "";
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
        if (s.id === current) select("");
        await loadSessions();
      } catch (e) { showError(e); }
    };
    li.append(title, del);
    li.onclick = () => select(s.id);
    ul.append(li);
  }
  if (!current && sessions.length) select(sessions[0].id);
  if (!current) renderTurns([]);
}

function select(id) {
  current = id;
  history.replaceState(null, "", location.pathname + location.search + (id ? "#" + encodeURIComponent(id) : ""));
  for (const li of document.querySelectorAll("#sessions li")) li.className = li.dataset.id === id ? "current" : "";
  showError(null);
  loadHistory().catch(showError);
}

// turnElement shows one turn: the user's message and the answer.
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
  div.append(u, a);
  return div;
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
  const { turns } = await r.json();
  if (id !== current || sending) return;
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
  sending = true;
  clearTimeout(poll);
  $("#send").disabled = true;
  showError(null);
  try {
    if (!current) {
      const s = await (await api("POST", "/api/sessions", {})).json();
      current = s.id;
      history.replaceState(null, "", location.pathname + location.search + "#" + encodeURIComponent(s.id));
    }
    const box = $("#messages");
    if (box.querySelector(".note")) box.replaceChildren();
    const el = turnElement({ id: "", user: text, answer: "", complete: false });
    box.append(el);
    box.scrollTop = box.scrollHeight;
    const answer = el.querySelector(".assistant");
    const r = await api("POST", "/api/sessions/" + encodeURIComponent(current) + "/messages", { content: text });
    $("#input").value = "";
    loadSessions().catch(showError); // the new session, or its new title
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
        if (event === "turn") el.dataset.turnId = d.turn_id;
        else if (event === "delta") { answer.textContent += d.text; box.scrollTop = box.scrollHeight; }
        else if (event === "done") {
          el.dataset.complete = String(d.complete);
          if (d.error) { el.classList.add("interrupted"); showError(d.error); }
        }
      }
    }
  } catch (e) {
    showError(e);
  } finally {
    sending = false;
    $("#send").disabled = false;
    loadSessions().catch(showError);
  }
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
