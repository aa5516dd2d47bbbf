// Dockyard dashboard: a single page over the /v1 API. No framework, no build step.
//
// Live data comes from two server-sent-event streams read with fetch (an EventSource cannot
// send the Authorization header): /v1/summary?watch=true (every service's and node's row,
// then only the rows that changed) and /v1/events?watch=true. A view re-renders from those;
// the few per-service reads (instances, revisions) are re-fetched when that service's row
// changes, at most every DEBOUNCE ms. The token lives in sessionStorage only.
"use strict";

const DEBOUNCE = 400;
const PAGE = 100;            // rows per page in long lists
const MAX_EVENTS = 500;      // events kept in memory for the views
const MAX_LOG_LINES = 5000;  // lines kept per log view
const MAX_LOG_STREAMS = 3;   // followed instances at once ("all"): a browser has 6 connections per host
const RANK = { viewer: 0, operator: 1, admin: 2 };

const S = {
  token: sessionStorage.getItem("dockyard.token"),
  you: null, services: new Map(), nodes: new Map(), events: [], connected: false,
  live: null, view: null,
};

// ------------------------------------------------------------------ helpers
const $ = (sel, el = document) => el.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const can = (role) => S.you && RANK[S.you.role] >= RANK[role];
const nsBase = (ns) => (ns && ns !== "default" ? `/v1/namespaces/${encodeURIComponent(ns)}` : "/v1");
const svcPath = (ns, name) => `${nsBase(ns)}/services/${encodeURIComponent(name)}`;
const fmtBytes = (n) => { if (!n) return "0"; const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; while (n >= 1024 && i < 4) { n /= 1024; i++; } return `${n.toFixed(n < 10 && i ? 1 : 0)} ${u[i]}`; };
const fmtTime = (t) => { if (!t) return ""; const d = typeof t === "number" ? new Date(t * 1000) : new Date(t); return d.toLocaleTimeString(); };
const debounce = (fn, ms) => { let t = null; return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); }; };

function toast(msg, bad = false) {
  const d = document.createElement("div");
  d.textContent = msg; if (bad) d.className = "err";
  $("#toast").appendChild(d); setTimeout(() => d.remove(), bad ? 8000 : 3000);
}

class ApiError extends Error { constructor(status, body) { super(body?.error?.message || `HTTP ${status}`); this.status = status; this.body = body; } }

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: `Bearer ${S.token}` } };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  const text = await r.text();
  let doc = null; try { doc = text ? JSON.parse(text) : null; } catch { doc = text; }
  if (r.status === 401) { logout("your token was refused: log in again"); throw new ApiError(401, doc); }
  if (!r.ok) throw new ApiError(r.status, doc);
  return doc;
}

async function act(what, fn) {
  try { const out = await fn(); toast(`${what}: done`); return out; } catch (e) { toast(`${what}: ${e.message}`, true); return null; }
}

// Server-sent events over fetch, reconnecting (1 s, then up to 10 s) until `signal` aborts.
async function sse(path, onMessage, signal, onState) {
  let backoff = 1000;
  while (!signal.aborted) {
    try {
      const r = await fetch(path, { headers: { Authorization: `Bearer ${S.token}`, Accept: "text/event-stream" }, signal });
      if (r.status === 401) { logout("your token was refused: log in again"); return; }
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      onState?.(true); backoff = 1000;
      const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let ev = "message"; const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) ev = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length) { try { onMessage(ev, JSON.parse(data.join("\n"))); } catch (e) { console.error(e); } }
        }
      }
    } catch (e) { if (signal.aborted) return; }
    onState?.(false);
    await new Promise((res) => setTimeout(res, backoff)); backoff = Math.min(backoff * 2, 10000);
  }
}

// ------------------------------------------------------------------ live state
const changed = new Set();   // service keys changed since the view last looked
let renderQueued = false;
function queueRender() {
  if (renderQueued) return; renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; S.view?.update?.(changed); changed.clear(); });
}

function startLive() {
  stopLive();
  const ctl = new AbortController(); S.live = ctl;
  const state = (on) => { S.connected = on; const el = $("#live"); el.textContent = on ? "live" : "reconnecting"; el.className = `live ${on ? "on" : "off"}`; };
  sse("/v1/summary?watch=true", (ev, d) => {
    if (ev === "snapshot") {
      S.you = d.you; $("#who").textContent = `${d.you.name} (${d.you.role})`;
      S.services = new Map(d.services.map((r) => [r.key, r])); S.nodes = new Map(d.nodes.map((r) => [r.key, r]));
      d.services.forEach((r) => changed.add(r.key));
    } else if (ev === "changes") {
      for (const r of d.services) { S.services.set(r.key, r); changed.add(r.key); }
      for (const k of d.removed_services) { S.services.delete(k); changed.add(k); }
      for (const r of d.nodes) S.nodes.set(r.key, r);
      for (const k of d.removed_nodes) S.nodes.delete(k);
    }
    queueRender();
  }, ctl.signal, state);
  api("GET", "/v1/events?limit=200").then((evs) => { S.events = evs.reverse().concat(S.events).slice(-MAX_EVENTS); queueRender(); }).catch(() => {});
  sse("/v1/events?watch=true", (ev, e) => {
    S.events.push(e); if (S.events.length > MAX_EVENTS) S.events.splice(0, S.events.length - MAX_EVENTS);
    if (e.service) changed.add(e.namespace && e.namespace !== "default" ? `${e.namespace}/${e.service}` : e.service);
    queueRender();
  }, ctl.signal);
}
function stopLive() { S.live?.abort(); S.live = null; }

function logout(why) {
  sessionStorage.removeItem("dockyard.token"); S.token = null; S.you = null; stopLive();
  if (why) toast(why, true);
  location.hash = "#/login";
}

// ------------------------------------------------------------------ pieces
function bar(r) {
  const pct = r.replicas ? Math.min(100, Math.round((100 * r.ready) / r.replicas)) : (r.ready ? 100 : 0);
  return `<span class="bar ${esc(r.health)}" title="${r.ready} of ${r.replicas} ready"><i style="width:${pct}%"></i><span data-testid="ready">${r.ready}/${r.replicas}</span></span>`;
}
const pill = (v, cls = v) => `<span class="pill ${esc(cls)}">${esc(v)}</span>`;
const svcHref = (r) => `#/services/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`;
const PROBLEMS = /unhealthy|unschedulable|node_down|rollout_paused|rollout_rolled_back|instance_restarted|failed/;
function eventLine(e) {
  const where = [e.namespace && e.namespace !== "default" ? e.namespace : "", e.service, e.node].filter(Boolean).join(" · ");
  return `<li data-kind="${esc(e.kind)}"><span class="t">${esc(fmtTime(e.time))}</span>${pill(e.kind, PROBLEMS.test(e.kind) ? "bad" : "")} <b>${esc(where)}</b> ${esc(e.message)} ${e.actor ? `<span class="muted">by ${esc(e.actor)}</span>` : ""}</li>`;
}

// ------------------------------------------------------------------ views
function loginView(main) {
  main.innerHTML = `<form class="login" id="login"><h1>Dockyard</h1>
    <p class="muted">Log in with an API token (admin, operator or viewer). It is kept in this browser tab's session only.</p>
    <input type="password" id="token" placeholder="token" autocomplete="off" data-testid="token" required>
    <button class="primary" type="submit" data-testid="login">Log in</button><p id="loginerr" class="err"></p></form>`;
  $("#login").onsubmit = async (ev) => {
    ev.preventDefault(); S.token = $("#token").value.trim();
    try {
      const s = await api("GET", "/v1/summary");
      sessionStorage.setItem("dockyard.token", S.token); S.you = s.you;
      location.hash = "#/";
    } catch (e) { $("#loginerr").textContent = e.status === 401 ? "that token is not valid" : e.message; S.token = null; }
  };
  return {};
}

function overviewView(main) {
  main.innerHTML = `<h1>Overview</h1><div class="cards" id="cards"></div><h2>Recent problems</h2><ul class="events" id="problems"></ul>`;
  const update = () => {
    const nodes = [...S.nodes.values()]; const svcs = [...S.services.values()];
    const count = (xs, f) => xs.filter(f).length;
    const cards = [
      ["nodes ready", count(nodes, (n) => n.status === "ready"), "nodes-ready"], ["nodes down", count(nodes, (n) => n.status !== "ready"), "nodes-down"],
      ["services healthy", count(svcs, (s) => s.health === "healthy"), "svc-healthy"], ["degraded", count(svcs, (s) => s.health === "degraded"), "svc-degraded"],
      ["rolling", count(svcs, (s) => s.health === "rolling"), "svc-rolling"],
      ["instances ready", svcs.reduce((a, s) => a + s.ready, 0), "inst-ready"],
    ];
    $("#cards").innerHTML = cards.map(([l, n, id]) => `<div class="card" data-testid="${id}"><div class="n">${n}</div><div class="l">${l}</div></div>`).join("");
    const probs = S.events.filter((e) => PROBLEMS.test(e.kind)).slice(-50).reverse();
    $("#problems").innerHTML = probs.length ? probs.map(eventLine).join("") : `<li class="muted">none</li>`;
  };
  update(); return { update };
}

function servicesView(main, params) {
  let page = 0;
  main.innerHTML = `<h1>Services</h1><div class="toolbar">
    <input id="q" placeholder="filter: name, namespace, image, stack" data-testid="filter" value="${esc(params.get("q") || "")}">
    <select id="health"><option value="">any state</option><option>healthy</option><option>degraded</option><option>rolling</option></select>
    <span id="count" class="muted"></span></div>
    <table><thead><tr><th>name</th><th>namespace</th><th>ready</th><th>revision</th><th>rollout</th><th>image</th><th>message</th></tr></thead>
    <tbody id="rows"></tbody></table><div class="pager"><button id="prev">‹ prev</button><span id="pg"></span><button id="next">next ›</button></div>`;
  const update = () => {
    const q = $("#q").value.trim().toLowerCase(); const h = $("#health").value;
    const rows = [...S.services.values()].filter((r) => (!h || r.health === h) &&
      (!q || `${r.name} ${r.namespace} ${r.image || ""} ${r.stack || ""}`.toLowerCase().includes(q)))
      .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
    const pages = Math.max(1, Math.ceil(rows.length / PAGE)); page = Math.min(page, pages - 1);
    $("#count").textContent = `${rows.length} of ${S.services.size}`; $("#pg").textContent = `page ${page + 1} of ${pages}`;
    $("#prev").disabled = page === 0; $("#next").disabled = page >= pages - 1;
    $("#rows").innerHTML = rows.slice(page * PAGE, (page + 1) * PAGE).map((r) => `<tr data-service="${esc(r.key)}">
      <td><a href="${svcHref(r)}">${esc(r.name)}</a></td><td>${esc(r.namespace)}</td><td>${bar(r)}</td><td class="num">${r.revision}</td>
      <td>${pill(r.rollout === "complete" ? r.health : r.rollout, r.rollout === "complete" ? r.health : r.rollout)}</td>
      <td class="muted">${esc(r.image)}</td><td class="muted">${esc(r.message)}</td></tr>`).join("") ||
      `<tr><td colspan="7" class="muted">${S.you ? "no services" : "loading…"}</td></tr>`;
  };
  $("#q").oninput = () => { page = 0; update(); }; $("#health").onchange = () => { page = 0; update(); };
  $("#prev").onclick = () => { page--; update(); }; $("#next").onclick = () => { page++; update(); };
  update(); return { update };
}

function nodesView(main) {
  main.innerHTML = `<h1>Nodes</h1><table><thead><tr><th>name</th><th>status</th><th>availability</th><th>CPU (requested / capacity)</th>
    <th>memory</th><th>instances</th><th>labels</th><th></th></tr></thead><tbody id="rows"></tbody></table>`;
  const use = (u, c, fmt) => { const pct = c ? Math.min(100, Math.round((100 * u) / c)) : 0;
    return `<span class="bar" title="${pct}%"><i style="width:${pct}%"></i><span>${fmt(u)} / ${fmt(c)}</span></span>`; };
  const update = () => {
    $("#rows").innerHTML = [...S.nodes.values()].map((n) => `<tr data-node="${esc(n.name)}"><td>${esc(n.name)}<div class="muted">${esc(n.address)}</div></td>
      <td>${pill(n.status)}</td><td data-testid="availability">${pill(n.availability)}</td>
      <td>${use(n.used_cpus, n.cpus, (x) => (+x).toFixed(2))}</td><td>${use(n.used_memory, n.memory, fmtBytes)}</td>
      <td class="num">${n.instances}</td><td class="labels">${Object.entries(n.labels || {}).map(([k, v]) => `<span>${esc(k)}=${esc(v)}</span>`).join("")}</td>
      <td>${can("admin") ? ["drain", "pause", "activate"].filter((a) => ({ drain: "drained", pause: "paused", activate: "active" })[a] !== n.availability)
        .map((a) => `<button data-act="${a}" data-node="${esc(n.name)}">${a}</button>`).join(" ") : ""}</td></tr>`).join("") ||
      `<tr><td colspan="8" class="muted">no nodes</td></tr>`;
  };
  $("#rows").onclick = (ev) => {
    const b = ev.target.closest("button[data-act]"); if (!b) return;
    const { act: a, node } = b.dataset;
    if (a === "drain" && !confirm(`Drain ${node}? Its instances move to other nodes.`)) return;
    act(`${a} ${node}`, () => api("POST", `/v1/nodes/${encodeURIComponent(node)}/${a}`));
  };
  update(); return { update };
}

function eventsView(main) {
  main.innerHTML = `<h1>Events</h1><div class="toolbar"><input id="q" placeholder="filter: kind, service, node, text"><span class="muted">live, newest first</span></div><ul class="events" id="evs"></ul>`;
  const update = () => {
    const q = $("#q").value.trim().toLowerCase();
    const evs = S.events.filter((e) => !q || JSON.stringify(e).toLowerCase().includes(q)).slice(-300).reverse();
    $("#evs").innerHTML = evs.map(eventLine).join("") || `<li class="muted">no events yet</li>`;
  };
  $("#q").oninput = update; update(); return { update };
}

// ------------------------------------------------------------------ service detail
function serviceView(main, ns, name) {
  const key = ns === "default" ? name : `${ns}/${name}`;
  const base = svcPath(ns, name);
  let tab = "instances"; let instances = []; let endpoints = null; let gatewayPort = null; let alive = true;
  main.innerHTML = `<h1><a href="#/services">Services</a> / ${esc(ns !== "default" ? ns + " / " : "")}<span data-testid="service-name">${esc(name)}</span></h1>
    <div class="cards" id="head"></div>
    <div class="toolbar" id="scalebar" ${can("operator") ? "" : "hidden"}>replicas <input id="replicas" type="number" min="0" max="1000" style="width:90px" data-testid="replicas">
      <button id="scale" class="primary" data-testid="scale">Scale</button></div>
    <div class="tabs" id="tabs">${["instances", "revisions", "events", "logs"].map((t) => `<button data-tab="${t}" data-testid="tab-${t}">${t}</button>`).join("")}</div>
    <div id="pane"></div><div id="termwrap"></div>`;
  const head = () => {
    if (!alive) return;
    $("#scalebar").hidden = !can("operator");
    const r = S.services.get(key);
    if (!r) { $("#head").innerHTML = `<div class="card muted">${S.you ? "no such service (deleted?)" : "loading…"}</div>`; return; }
    $("#head").innerHTML = `<div class="card"><div class="n">${bar(r)}</div><div class="l">ready / desired</div></div>
      <div class="card"><div class="n">${r.revision}</div><div class="l">revision</div></div>
      <div class="card"><div class="n">${pill(r.rollout === "complete" ? r.health : r.rollout)}</div><div class="l">rollout</div></div>
      <div class="card"><div class="n" style="font-size:14px">${esc(r.image)}</div><div class="l">${esc(r.message) || "image"}</div></div>`;
    const inp = $("#replicas"); if (document.activeElement !== inp && !inp.dataset.dirty) inp.value = r.replicas;
  };
  $("#replicas").oninput = (ev) => { ev.target.dataset.dirty = "1"; };
  $("#scale").onclick = async () => {
    const n = parseInt($("#replicas").value, 10);
    if (await act(`scale ${name} to ${n}`, () => api("POST", `${base}/scale`, { replicas: n }))) delete $("#replicas").dataset.dirty;
  };

  const loadInstances = async () => {
    try {
      [instances, endpoints] = await Promise.all([api("GET", `${base}/instances`), api("GET", `${base}/endpoints`)]);
      if (gatewayPort === null) { const ns_ = await api("GET", "/v1/nodes"); const gw = ns_.find((n) => n.gateway); gatewayPort = gw ? gw.gateway.split(":").pop() : ""; }
    } catch (e) { instances = []; }
    if (tab === "instances") renderInstances();
  };
  const refresh = debounce(() => { loadInstances(); if (tab === "revisions") renderRevisions(); }, DEBOUNCE);
  const gatewayUrl = () => (endpoints?.routes || []).map((rt) => {
    const u = gatewayPort ? rt.url.replace(/^(https?:\/\/[^/]+)/, `$1:${gatewayPort}`) : rt.url;
    return `<a href="${esc(u)}" target="_blank" rel="noopener">${esc(u)}</a>`; }).join(" ");

  function renderInstances() {
    const pane = $("#pane"); if (!alive || !pane) return;
    pane.innerHTML = `<p class="muted">gateway: ${gatewayUrl() || "no routes (expose a port to route it)"}</p>
      <table><thead><tr><th>slot</th><th>id</th><th>node</th><th>state</th><th>health</th><th>revision</th><th>restarts</th><th>host ports</th><th>last error</th><th></th></tr></thead>
      <tbody>${instances.map((i) => `<tr data-instance="${esc(i.id)}"><td class="num">${i.slot}</td><td><code>${esc(i.id)}</code></td><td>${esc(i.node || "-")}</td>
      <td>${pill(i.state)}</td><td>${i.healthy === null || i.healthy === undefined ? "-" : pill(i.healthy ? "healthy" : "unhealthy")}</td><td class="num">${i.revision}</td>
      <td class="num">${i.restart_count}</td><td>${(i.host_ports || []).map((p) => esc(`${p.host_port ?? p[1] ?? ""}→${p.container_port ?? p[0] ?? ""}`)).join(" ")}</td>
      <td class="err">${esc(i.last_error)}</td><td><button data-logs="${esc(i.id)}">logs</button>
      ${can("operator") ? `<button data-term="${esc(i.id)}" data-testid="terminal">terminal</button>` : ""}</td></tr>`).join("") ||
      `<tr><td colspan="10" class="muted">no instances</td></tr>`}</tbody></table>`;
    pane.onclick = (ev) => {
      const l = ev.target.closest("[data-logs]"); if (l) { logTarget = l.dataset.logs; select("logs"); return; }
      const t = ev.target.closest("[data-term]"); if (t) openTerminal(t.dataset.term);
    };
  }

  async function renderRevisions() {
    const revs = await api("GET", `${base}/revisions`).catch(() => []);
    if (tab !== "revisions" || !alive) return;
    const opts = revs.map((r) => `<option value="${r.number}">${r.number}${r.current ? " (current)" : ""}</option>`).join("");
    $("#pane").innerHTML = `<div class="toolbar">diff <select id="da">${opts}</select> → <select id="db">${opts}</select>
      <button id="dodiff" data-testid="diff">show diff</button></div><pre class="diff" id="diffout" hidden></pre>
      <table><thead><tr><th>revision</th><th>created</th><th>cause</th><th></th></tr></thead><tbody>${revs.map((r) => `<tr data-revision="${r.number}">
      <td class="num">${r.number} ${r.current ? pill("current", "ok") : ""}</td><td>${esc(fmtTime(r.created_at))}</td><td>${esc(r.change_cause)}</td>
      <td>${!r.current && can("operator") ? `<button data-rollback="${r.number}" data-testid="rollback-${r.number}">roll back to this</button>` : ""}</td></tr>`).join("")}</tbody></table>`;
    if (revs.length > 1) { $("#da").value = revs[1].number; $("#db").value = revs[0].number; }
    $("#dodiff").onclick = async () => {
      const d = await api("GET", `${base}/revisions/${$("#da").value}/diff/${$("#db").value}`).catch((e) => ({ error: e.message }));
      const out = $("#diffout"); out.hidden = false;
      out.innerHTML = d.error ? esc(d.error) : d.changes.length ? d.changes.map((c) => `<b>${esc(c.field)}</b>: <span class="del">${esc(JSON.stringify(c.from))}</span> → <span class="add">${esc(JSON.stringify(c.to))}</span>`).join("\n") : "no differences";
    };
    $("#pane").querySelector("tbody").onclick = async (ev) => {
      const b = ev.target.closest("[data-rollback]"); if (!b) return;
      if (!confirm(`Roll ${name} back to revision ${b.dataset.rollback}?`)) return;
      if (await act(`roll back to ${b.dataset.rollback}`, () => api("POST", `${base}/rollback`, { revision: +b.dataset.rollback }))) renderRevisions();
    };
  }

  let evs = [];
  async function renderEvents(initial) {
    if (initial) evs = await api("GET", `/v1/events?service=${encodeURIComponent(name)}&namespace=${encodeURIComponent(ns)}&limit=200`).then((x) => x.reverse()).catch(() => []);
    if (tab !== "events" || !alive) return;
    const seen = new Set(evs.map((e) => e.id));
    for (const e of S.events) if (e.service === name && (e.namespace || "default") === ns && !seen.has(e.id)) { evs.push(e); seen.add(e.id); }
    evs.sort((a, b) => a.id - b.id);
    $("#pane").innerHTML = `<ul class="events">${evs.slice(-300).reverse().map(eventLine).join("") || `<li class="muted">none</li>`}</ul>`;
  }

  // logs: one instance or (up to MAX_LOG_STREAMS of) all, followed; pause keeps reading but stops drawing
  let logTarget = "all"; let logCtl = null; let lines = []; let paused = false;
  function renderLogs() {
    $("#pane").innerHTML = `<div class="toolbar"><select id="lt" data-testid="log-target"><option value="all">all instances</option>
      ${instances.map((i) => `<option value="${esc(i.id)}">${esc(name)}.${i.slot} (${esc(i.id)})</option>`).join("")}</select>
      <label><input type="checkbox" id="follow" checked> follow</label><button id="pause" data-testid="log-pause">pause</button>
      <button id="dl" data-testid="log-download">download</button><button id="clr">clear</button><span id="lnote" class="muted"></span></div>
      <pre class="log" id="log" data-testid="log"></pre>`;
    $("#lt").value = instances.some((i) => i.id === logTarget) ? logTarget : "all";
    $("#lt").onchange = () => { logTarget = $("#lt").value; startLogs(); };
    $("#follow").onchange = startLogs;
    $("#pause").onclick = () => { paused = !paused; $("#pause").textContent = paused ? "resume" : "pause"; if (!paused) drawLogs(); };
    $("#clr").onclick = () => { lines = []; drawLogs(); };
    $("#dl").onclick = () => {
      const a = document.createElement("a"); a.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/plain" }));
      a.download = `${name}-${logTarget}.log`; a.click(); setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    };
    startLogs();
  }
  function drawLogs() {
    const el = $("#log"); if (!el || paused) return;
    const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 20;
    el.textContent = lines.join("\n"); if (atBottom) el.scrollTop = el.scrollHeight;
  }
  const drawSoon = debounce(drawLogs, 100);
  function stopLogs() { logCtl?.abort(); logCtl = null; }
  function startLogs() {
    stopLogs(); lines = []; drawLogs();
    const ctl = new AbortController(); logCtl = ctl;
    const follow = $("#follow")?.checked ?? true;
    const targets = logTarget === "all" ? instances.slice(0, MAX_LOG_STREAMS) : instances.filter((i) => i.id === logTarget);
    $("#lnote").textContent = logTarget === "all" && instances.length > MAX_LOG_STREAMS ? `showing ${MAX_LOG_STREAMS} of ${instances.length} instances: pick one for the others` : "";
    const many = targets.length > 1;
    for (const i of targets) {
      (async () => {
        try {
          const r = await fetch(`/v1/instances/${encodeURIComponent(i.id)}/logs?tail=200&follow=${follow}`, { headers: { Authorization: `Bearer ${S.token}` }, signal: ctl.signal });
          if (!r.ok) { const b = await r.json().catch(() => ({})); lines.push(`[${name}.${i.slot}: ${b?.error?.message || r.status}]`); drawSoon(); return; }
          const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
          for (;;) {
            const { value, done } = await reader.read(); if (done) break;
            buf += dec.decode(value, { stream: true }); const parts = buf.split("\n"); buf = parts.pop();
            for (const p of parts) lines.push(many ? `${name}.${i.slot} | ${p}` : p);
            if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
            drawSoon();
          }
          if (buf) { lines.push(many ? `${name}.${i.slot} | ${buf}` : buf); drawSoon(); }
        } catch (e) { /* aborted */ }
      })();
    }
  }

  // terminal: xterm.js over the exec WebSocket (operator and admin only)
  let term = null;
  function closeTerminal() { term?.ws?.close(); term?.x?.dispose(); term = null; const w = $("#termwrap"); if (w) w.innerHTML = ""; }
  function openTerminal(iid) {
    closeTerminal();
    $("#termwrap").innerHTML = `<h2>terminal: ${esc(iid)}</h2><div class="toolbar">command <input id="tcmd" value="sh" data-testid="term-command">
      <button id="tgo" class="primary" data-testid="term-start">start</button><button id="tclose">close</button><span id="tstate" class="muted" data-testid="term-state"></span></div><div class="term" id="term" data-testid="term"></div>`;
    $("#tclose").onclick = closeTerminal;
    $("#tgo").onclick = () => {
      term?.ws?.close(); term?.x?.dispose(); $("#term").innerHTML = "";
      const x = new window.Terminal({ cursorBlink: true, fontSize: 13, convertEol: false }); const fit = new window.FitAddon.FitAddon();
      x.loadAddon(fit); x.open($("#term")); fit.fit();
      const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/instances/${encodeURIComponent(iid)}/exec/ws`);
      ws.binaryType = "arraybuffer"; term = { x, ws };
      const cmd = $("#tcmd").value.trim().split(/\s+/).filter(Boolean);
      ws.onopen = () => { ws.send(JSON.stringify({ token: S.token, command: cmd.length ? cmd : ["sh"], tty: true, cols: x.cols, rows: x.rows })); $("#tstate").textContent = "connecting…"; };
      ws.onmessage = (m) => {
        if (typeof m.data !== "string") { x.write(new Uint8Array(m.data).subarray(1)); return; }
        const d = JSON.parse(m.data);
        if (d.type === "started") { $("#tstate").textContent = `running on ${d.node}`; x.focus(); }
        else if (d.type === "exit") { $("#tstate").textContent = `exited with code ${d.exit_code}`; x.write(`\r\n[exited with code ${d.exit_code}]\r\n`); }
        else if (d.type === "error") { $("#tstate").textContent = d.error.message; x.write(`\r\n[${d.error.message}]\r\n`); }
      };
      ws.onclose = () => { if ($("#tstate") && /connecting|running/.test($("#tstate").textContent)) $("#tstate").textContent = "closed"; };
      const enc = new TextEncoder();
      x.onData((d) => { if (ws.readyState === 1) ws.send(enc.encode(d)); });
      x.onResize(({ cols, rows }) => { if (ws.readyState === 1) ws.send(JSON.stringify({ resize: { cols, rows } })); });
    };
  }

  function select(t) {
    if (tab === "logs" && t !== "logs") stopLogs();
    tab = t; for (const b of main.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === t);
    ({ instances: renderInstances, revisions: renderRevisions, events: () => renderEvents(true), logs: renderLogs })[t]();
  }
  $("#tabs").onclick = (ev) => { const b = ev.target.closest("[data-tab]"); if (b) select(b.dataset.tab); };
  head(); select("instances"); loadInstances();
  return {
    update(keys) { head(); if (keys.has(key)) { refresh(); if (tab === "events") renderEvents(false); } },
    leave() { alive = false; stopLogs(); closeTerminal(); },
  };
}

// ------------------------------------------------------------------ router
function route() {
  S.view?.leave?.(); S.view = null;
  const main = $("#main");
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (!S.token) {
    $("#logout").hidden = true; $("#nav").hidden = true;
    if (parts[0] !== "login") { location.hash = "#/login"; return; }
    S.view = loginView(main); return;
  }
  $("#logout").hidden = false; $("#nav").hidden = false;
  if (!S.live) startLive();
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.nav === (parts[0] || "overview"));
  if (parts[0] === "login") { location.hash = "#/"; return; }
  if (parts[0] === "services" && parts.length === 3) S.view = serviceView(main, parts[1], parts[2]);
  else if (parts[0] === "services") S.view = servicesView(main, params);
  else if (parts[0] === "nodes") S.view = nodesView(main);
  else if (parts[0] === "events") S.view = eventsView(main);
  else S.view = overviewView(main);
}

$("#logout").onclick = () => logout();
window.addEventListener("hashchange", route);
route();
