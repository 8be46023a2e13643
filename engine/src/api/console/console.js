// Fanfare console: plain JavaScript, no libraries, no outside requests.
//
// The API token lives in sessionStorage (gone with the tab) and is only ever put
// into the Authorization header of this engine's own /v1 requests: it is never
// written to the page, the log or the console. The page writes text, never markup.
"use strict";

const TOKEN_KEY = "fanfare.token";
const HISTORY = 60; // seconds of chart
const COLORS = ["#2f5bd3", "#d9480f", "#137a3a", "#862e9c", "#c2255c", "#0b7285",
                "#5c940d", "#a15c00", "#495057"];

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

// ---- log ---------------------------------------------------------------------
// One line per request: method, path, status and the API's error message. Paths
// hold ids, never the token; request bodies are not logged.
function log(text, bad) {
  const list = $("log");
  const stamp = new Date().toISOString().slice(11, 19);
  list.prepend(el("li", bad ? { class: "bad" } : {}, `${stamp} ${text}`));
  while (list.children.length > 200) list.lastChild.remove();
}

// ---- the API -----------------------------------------------------------------
function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// A request to this engine. Resolves to {status, body, error}: `error` is a
// sentence for the page when the request failed (network, 401, 404, 5xx...).
async function api(method, path, body, quiet) {
  const headers = { "Accept": "application/json" };
  const t = token();
  if (t && path.startsWith("/v1/")) headers["Authorization"] = "Bearer " + t;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    const error = `${method} ${path}: the engine did not answer (${e.message})`;
    if (!quiet) log(error, true);
    return { status: 0, body: null, error };
  }
  let json = null;
  try { json = await resp.json(); } catch (_) { json = null; }
  let error = null;
  if (!resp.ok) {
    const code = json && json.error ? json.error.code : "";
    const msg = json && json.error ? json.error.message : resp.statusText;
    error = `${resp.status} ${code}: ${msg}`;
    if (resp.status === 401) error += " — enter the API token above";
  }
  if (!quiet) log(`${method} ${path} → ${resp.status}${error ? " " + error : ""}`, !!error);
  return { status: resp.status, body: json, error };
}

function showError(target, error) {
  target.replaceChildren(el("p", { class: "error" }, error));
}

function kv(pairs) {
  const dl = el("dl", { class: "kv" });
  for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v));
  return dl;
}

function table(headers, rows) {
  const t = el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
  const tb = el("tbody");
  for (const r of rows) tb.append(el("tr", {}, ...r.map((c) => el("td", {}, c ?? "—"))));
  t.append(tb);
  return t;
}

// ---- token -------------------------------------------------------------------
function setConn(text, cls) {
  const c = $("conn");
  c.textContent = text;
  c.className = "pill " + (cls || "");
}

function initToken() {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    log(value ? "token set for this tab" : "token cleared");
    poll.lastError = null;
    tick();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    log("token cleared");
    tick();
  });
}

// ---- live overview -----------------------------------------------------------
const poll = { busy: false, prev: null, prevAt: 0, history: new Map(), lastError: null };

async function tick() {
  if (poll.busy) return;
  poll.busy = true;
  try {
    const [stats, ready] = await Promise.all([
      api("GET", "/v1/stats", undefined, true),
      api("GET", "/readyz", undefined, true),
    ]);
    if (stats.error) {
      // Logged once per change, not every second.
      if (poll.lastError !== stats.error) log("GET /v1/stats → " + stats.error, true);
      poll.lastError = stats.error;
      setConn(stats.status === 401 ? "token needed" : "error", "bad");
      $("overview-totals").replaceChildren(el("p", { class: "error" }, stats.error));
      return;
    }
    if (poll.lastError) log("GET /v1/stats → 200 (connected)");
    poll.lastError = null;
    setConn("connected", "ok");
    renderOverview(stats.body, ready.body || {});
  } finally {
    poll.busy = false;
  }
}

function renderOverview(s, ready) {
  const now = performance.now();
  const dt = poll.prev ? (now - poll.prevAt) / 1000 : 0;
  const providers = s.providers || {};
  const rates = {};
  for (const [name, c] of Object.entries(providers)) {
    const before = poll.prev && poll.prev.providers ? poll.prev.providers[name] : null;
    rates[name] = before && dt > 0 ? Math.max(0, (c.sent - before.sent) / dt) : 0;
    const h = poll.history.get(name) || [];
    h.push(rates[name]);
    while (h.length > HISTORY) h.shift();
    poll.history.set(name, h);
  }
  poll.prev = s;
  poll.prevAt = now;

  const totalRate = Object.values(rates).reduce((a, b) => a + b, 0);
  const totals = el("dl", { class: "totals" });
  const add = (k, v) => totals.append(el("dt", {}, k), el("dd", {}, v));
  add("pushes/s", totalRate.toFixed(1));
  add("bindings", s.bindings);
  add("users", s.users);
  add("online users", s.online_users);
  add("groups", s.groups);
  add("messages accepted", s.messages_accepted);
  add("calls accepted", s.calls_accepted);
  add("requests shed", s.requests_shed);
  add("dead tokens removed", s.invalid_tokens_removed);
  add("storage", s.storage && s.storage.writes_failing ? "writes failing" : "ok");
  $("overview-totals").replaceChildren(totals);

  // One row per lane: readiness state and breaker, pushes/s of its providers, depths.
  const vendors = ready.vendors || {};
  const lanes = s.lanes || {};
  const rows = [];
  for (const [lane, l] of Object.entries(lanes)) {
    const r = vendors[lane] || {};
    const mine = Object.keys(providers).filter((p) => p === lane || p.startsWith(lane + "_"));
    const sum = (f) => mine.reduce((a, p) => a + (f(p) || 0), 0);
    const fail = r.last_failure;
    const failText = fail ? `${fail.age_s}s ago: ${fail.cause || ""} ${fail.status || ""} ${fail.reason || ""}`.trim() : "";
    const tr = el("tr", {},
      el("td", {}, lane),
      el("td", { class: r.state === "ok" ? "ok" : r.state === "degraded" ? "bad" : "" }, r.state || "—"),
      el("td", { class: l.breaker === "closed" ? "" : "warn" }, l.breaker),
      el("td", {}, sum((p) => rates[p]).toFixed(1)),
      el("td", {}, l.queue_depth),
      el("td", {}, l.in_flight),
      el("td", {}, l.waiting_retry),
      el("td", {}, sum((p) => providers[p].delivered)),
      el("td", {}, sum((p) => providers[p].failed)),
      el("td", {}, failText));
    rows.push(tr);
  }
  $("vendors").tBodies[0].replaceChildren(...rows);
  drawChart();
}

function drawChart() {
  const chart = $("chart");
  const W = 600, H = 160, L = 34, B = 16, T = 8;
  const series = [...poll.history.entries()].filter(([, h]) => h.some((v) => v > 0));
  const max = Math.max(1, ...series.flatMap(([, h]) => h));
  const top = Math.pow(10, Math.ceil(Math.log10(max)));
  const yMax = max <= top / 2 ? top / 2 : top;
  const x = (i, n) => L + ((W - L - 4) * (HISTORY - n + i)) / (HISTORY - 1);
  const y = (v) => H - B - ((H - B - T) * v) / yMax;
  const nodes = [];
  for (const f of [0, 0.5, 1]) {
    nodes.push(svg("line", { class: "grid", x1: L, x2: W - 4, y1: y(yMax * f), y2: y(yMax * f) }));
    const label = svg("text", { class: "axis", x: L - 4, y: y(yMax * f) + 3, "text-anchor": "end" });
    label.textContent = String(+(yMax * f).toFixed(1));
    nodes.push(label);
  }
  for (const [t, txt] of [[L, "-60 s"], [W - 4, "now"]]) {
    const label = svg("text", { class: "axis", x: t, y: H - 3, "text-anchor": t === L ? "start" : "end" });
    label.textContent = txt;
    nodes.push(label);
  }
  const legend = [];
  series.forEach(([name, h], k) => {
    const color = COLORS[k % COLORS.length];
    const points = h.map((v, i) => `${x(i, h.length).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    nodes.push(svg("polyline", { points, stroke: color }));
    const sw = el("span", { class: "swatch" });
    sw.style.background = color;
    legend.push(el("span", {}, sw, `${name} pushes/s`));
  });
  if (!series.length) legend.push(el("span", {}, "no pushes in the last 60 s"));
  chart.replaceChildren(...nodes);
  $("chart-legend").replaceChildren(...legend);
}

// ---- user --------------------------------------------------------------------
function initUser() {
  $("user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = $("user-id").value.trim();
    const out = $("user-result");
    const r = await api("GET", "/v1/users/" + encodeURIComponent(id));
    if (r.error) return showError(out, r.error);
    const u = r.body;
    const dnd = u.do_not_disturb.map((c) => `${c.conversation_type}:${c.conversation_id}`).join(", ");
    out.replaceChildren(
      kv([
        ["user_id", u.user_id],
        ["presence", u.online ? `online (${u.sessions} session${u.sessions === 1 ? "" : "s"})` : "offline"],
        ["badge", u.badge],
        ["do-not-disturb", dnd || "none"],
        ["bindings", u.push_ids.length],
      ]),
      u.push_ids.length
        ? table(["push_id", "provider", "environment", "app_id", "token"],
            u.push_ids.map((d) => [d.push_id, d.provider, d.environment, d.app_id, d.token_prefix]))
        : el("p", {}, "No bindings."));
  });
}

// ---- ledger ------------------------------------------------------------------
function initLedger() {
  $("ledger-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = $("ledger-kind").value;
    const id = $("ledger-id").value.trim();
    const out = $("ledger-result");
    const r = await api("GET", `/v1/${kind}/` + encodeURIComponent(id));
    if (r.error) return showError(out, r.error);
    const d = r.body;
    const o = d.outcomes;
    out.replaceChildren(
      kv([
        [kind === "calls" ? "call_id" : "message_id", d.message_id || d.call_id],
        ["accepted", new Date(d.accepted_at_ms).toISOString()],
        ["targets", d.targets],
        ["outcomes", Object.entries(o).map(([k, v]) => `${k} ${v}`).join(" · ")],
      ]),
      d.failures.length
        ? table(["push_id", "provider", "outcome", "status", "reason"],
            d.failures.map((f) => [f.push_id, f.provider, f.outcome, f.status, f.reason]))
        : el("p", {}, o.pending ? "Still pending." : "No failures."));
  });
}

// ---- debug push --------------------------------------------------------------
function initPush() {
  $("push-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = $("push-verdict");
    const push = {};
    const text = (id, key) => { const v = $(id).value; if (v !== "") push[key] = v; };
    const num = (id, key) => { const v = $(id).value; if (v !== "") push[key] = Number(v); };
    text("push-title", "title");
    text("push-content", "content");
    text("push-payload", "payload");
    text("push-sound", "sound");
    text("push-priority", "priority");
    num("push-badge", "badge_increment");
    num("push-ttl", "ttl_s");
    if ($("push-silent").checked) push.silent = true;
    out.replaceChildren(el("p", {}, "sending…"));
    const r = await api("POST", "/v1/debug/push", { push_id: $("push-id").value.trim(), push });
    if (r.error) return showError(out, r.error);
    const v = r.body;
    out.replaceChildren(kv([
      ["outcome", v.outcome],
      ["provider", v.provider],
      ["status", v.status ?? "no answer"],
      ["reason", v.reason ?? "—"],
      ["vendor_id", v.vendor_id ?? "—"],
    ]));
    out.firstChild.children[1].className = v.outcome === "delivered" ? "ok" : "bad";
  });
}

// ---- running configuration ---------------------------------------------------
function initConfig() {
  $("config-load").addEventListener("click", async () => {
    const out = $("config-view");
    const r = await api("GET", "/v1/admin/config");
    if (r.error) { out.textContent = r.error; out.className = "result error"; return; }
    out.className = "result";
    const c = r.body;
    const head = `# file: ${c.file || "(none: defaults)"}\n# environment overrides: ${c.env_overrides.join(", ") || "none"}\n`;
    out.textContent = head + JSON.stringify(c.config, null, 2);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  initToken();
  initUser();
  initLedger();
  initPush();
  initConfig();
  tick();
  setInterval(tick, 1000);
});
