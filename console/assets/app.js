// quotaq console: the tenants table and a page per tenant. Plain JavaScript,
// no build step; the server does the sorting, filtering and paging.
"use strict";

const $ = (id) => document.getElementById(id);
let meta = { actions: false };
const table = { filter: "", state: "", sort: "tenant", desc: false, page: 1, perPage: 50 };
let timer = null;   // the current view's poll
let viewGen = 0;    // bumped on each view change: late answers of an old view are dropped

// api fetches a JSON endpoint; a non-2xx answer throws its "error".
async function api(path, opts) {
  const res = await fetch(path, opts);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.status + " " + res.statusText);
  return body;
}

function showError(err) {
  const p = $("error");
  p.hidden = !err;
  p.textContent = err ? String(err.message || err) : "";
}

// dur formats seconds for people: 3h12m, 4m05s, 1.5s, 250ms; "-" for none.
function dur(s) {
  if (!s || s <= 0) return "-";
  if (s < 1) return Math.round(s * 1000) + "ms";
  if (s < 60) return (Math.round(s * 10) / 10) + "s";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  if (h > 0) return h + "h" + String(m).padStart(2, "0") + "m";
  return m + "m" + String(sec).padStart(2, "0") + "s";
}

// policyText is the policy as quotaq-enqueue prints it: 2/s burst 4 quota 10 per 24h0m0s.
function policyText(p) {
  let s = p.rate + "/s burst " + p.burst;
  if (p.quota > 0) {
    s += " quota " + p.quota;
    if (p.quota_period !== "0s") s += " per " + p.quota_period;
  }
  if (p.concurrency > 0) s += " concurrency " + p.concurrency;
  return s;
}

function quotaText(q) { return q ? q.used + "/" + q.limit : "-"; }

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

// ---- the tenants table ----

let tableSeq = 0; // answers older than the last one shown are dropped

async function loadTable() {
  const gen = viewGen, seq = ++tableSeq;
  const q = new URLSearchParams({ sort: table.sort, page: table.page, per_page: table.perPage });
  if (table.desc) q.set("desc", "1");
  if (table.filter) q.set("filter", table.filter);
  if (table.state) q.set("state", table.state);
  let p;
  try {
    p = await api("api/tenants?" + q);
  } catch (err) {
    if (gen === viewGen && seq === tableSeq) showError(err);
    return;
  }
  if (gen !== viewGen || seq !== tableSeq) return;
  showError(p.stale ? new Error("showing an older list: " + p.stale) : null);
  if (p.page > p.pages && p.matching > 0) { table.page = p.pages; return loadTable(); }
  const tbody = $("tenants").tBodies[0];
  const rows = p.rows.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.tenant = s.tenant;
    const a = document.createElement("a");
    a.href = "#/tenant/" + encodeURIComponent(s.tenant);
    a.textContent = s.tenant;
    cell(tr, "").appendChild(a);
    cell(tr, policyText(s.policy) + (s.policy.explicit ? "" : " (default)"), s.policy.explicit ? "" : "muted");
    cell(tr, s.tokens + "/" + s.policy.burst, "num");
    cell(tr, quotaText(s.quota), "num");
    cell(tr, s.paused ? dur(s.hold_left_seconds) : "-", s.paused ? "num held" : "num");
    cell(tr, String(s.holds), "num");
    const w = s.waiting;
    cell(tr, w.for_their_turn + "/" + w.for_quota_or_pause + "/" + w.for_a_slot, "num");
    cell(tr, w.due_now ? "now" : dur(w.next_due_in_seconds), "num");
    cell(tr, dur(w.drain_in_seconds), "num");
    cell(tr, String(s.tasks.pending), "num");
    cell(tr, String(s.tasks.scheduled), "num");
    cell(tr, String(s.tasks.active), "num");
    cell(tr, String(s.tasks.archived), "num");
    return tr;
  });
  tbody.replaceChildren(...rows);
  $("count").textContent = p.matching === p.total
    ? p.total + " tenants"
    : p.matching + " of " + p.total + " tenants";
  $("pageinfo").textContent = "page " + p.page + " of " + p.pages;
  $("prev").disabled = p.page <= 1;
  $("next").disabled = p.page >= p.pages;
  $("asof").textContent = "as of " + new Date(p.as_of).toLocaleTimeString() +
    " (read in " + Math.round(p.snapshot_took_ms) + " ms)";
  for (const th of document.querySelectorAll("#tenants th")) {
    th.classList.toggle("sorted-asc", th.dataset.sort === table.sort && !table.desc);
    th.classList.toggle("sorted-desc", th.dataset.sort === table.sort && table.desc);
  }
  document.body.dataset.loaded = "table";
}

function setupTable() {
  for (const th of document.querySelectorAll("#tenants th")) {
    th.addEventListener("click", () => {
      if (table.sort === th.dataset.sort) table.desc = !table.desc;
      else { table.sort = th.dataset.sort; table.desc = false; }
      table.page = 1;
      loadTable();
    });
  }
  let debounce = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { table.filter = $("filter").value.trim(); table.page = 1; loadTable(); }, 200);
  });
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  $("state").addEventListener("change", () => { table.state = $("state").value; table.page = 1; loadTable(); });
  $("perpage").addEventListener("change", () => { table.perPage = Number($("perpage").value); table.page = 1; loadTable(); });
  $("prev").addEventListener("click", () => { table.page--; loadTable(); });
  $("next").addEventListener("click", () => { table.page++; loadTable(); });
}

// ---- a tenant's page ----

let tenantID = "";
let live = null; // the last live answer

async function loadTenant() {
  const gen = viewGen;
  try {
    const s = await api("api/tenant?id=" + encodeURIComponent(tenantID));
    if (gen !== viewGen) return;
    showError(null);
    const w = s.waiting;
    // by why they were put back; the rare causes only when some wait for them
    for (const [cause, n] of Object.entries(w.by_cause)) {
      const dd = $("t-wait-" + cause);
      if (!dd) continue;
      dd.textContent = n;
      if ("rare" in dd.dataset) dd.hidden = dd.previousElementSibling.hidden = n === 0;
    }
    $("t-next-due").textContent = w.due_now ? "now" : dur(w.next_due_in_seconds);
    $("t-drain").textContent = w.drain_in_seconds > 0 ? "about " + dur(w.drain_in_seconds) + " at its rate now" : "-";
    for (const k of ["pending", "scheduled", "retry", "active", "archived"]) $("t-" + k).textContent = s.tasks[k];
    showStanding(s);
    document.body.dataset.loaded = "tenant";
  } catch (err) {
    if (gen === viewGen) showError(err);
  }
}

// showStanding fills what the limiter says (also polled every second).
function showStanding(s) {
  $("t-policy").textContent = policyText(s.policy) + (s.policy.explicit ? "" : " (the default: it has none of its own)");
  $("t-policy-rate").textContent = s.policy.rate + "/s";
  // with tasks booked ahead, the next free token comes after all of them:
  // say so rather than show a wait that looks like a fault
  $("t-tokens").textContent = s.tokens + " of " + s.policy.burst + (s.booked > 0
    ? ", booked ahead by " + s.booked + " waiting tasks"
    : s.next_token_in_seconds > 0 ? ", next in " + dur(s.next_token_in_seconds) : "");
  $("t-inflight").textContent = s.policy.concurrency > 0 ? s.in_flight + " of " + s.policy.concurrency : "no limit";
  $("t-hold").textContent = s.paused ? "yes, " + dur(s.hold_left_seconds) + " left" : "no";
  $("t-hold-why").textContent = s.paused
    ? "its upstream refused a call (429 or 503) and asked to wait (Retry-After)"
    : "-";
  $("t-holds").textContent = s.holds;
  $("t-rate-now").textContent = s.learned_rate > 0
    ? s.learned_rate + "/s of " + s.policy.rate + "/s, slowed by its upstream's refusals; back in " + dur(s.learned_full_in_seconds)
    : "its policy's, " + s.policy.rate + "/s";
  $("t-learned-rate").textContent = s.learned_rate > 0 ? s.learned_rate + "/s" : "-";
  const q = s.quota;
  $("t-quota").textContent = q ? q.used + " of " + q.limit + " (" + q.remaining + " left)" : "no quota";
  $("t-quota-runs").textContent = q ? Math.max(q.used - s.booked, 0) : "-";
  $("t-quota-booked").textContent = q ? s.booked : "-";
  $("t-quota-resets").textContent = q ? (q.resets_in_seconds > 0 ? dur(q.resets_in_seconds) : "when reset (schedule or quota reset)") : "-";
  let sum = s.paused ? "held for " + dur(s.hold_left_seconds) : "running";
  if (q && q.remaining === 0) sum = "quota used up";
  $("t-summary").textContent = sum;
}

async function loadLive() {
  const gen = viewGen;
  try {
    const l = await api("api/tenant/live?id=" + encodeURIComponent(tenantID));
    if (gen !== viewGen) return;
    live = l;
    $("asof").textContent = "live, " + new Date().toLocaleTimeString();
    showStanding(l.standing);
    drawChart();
  } catch (err) {
    if (gen === viewGen) showError(err);
  }
}

// average is the moving average of xs over the last k values.
function average(xs, k) {
  const out = [];
  let sum = 0;
  xs.forEach((x, i) => {
    sum += x;
    if (i >= k) sum -= xs[i - k];
    out.push(sum / Math.min(i + 1, k));
  });
  return out;
}

function drawChart() {
  const cv = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const W = cv.clientWidth || 900, H = cv.clientHeight || 240;
  cv.width = W * dpr; cv.height = H * dpr;
  const g = cv.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, W, H);
  if (!live) return;
  const s = live.standing, xs = live.started, avg = average(xs, 5);
  const policy = s.policy.rate, learned = s.learned_rate;
  const top = Math.max(policy * 1.25, ...xs, 1);
  const L = 44, R = 8, T = 8, B = 22, pw = W - L - R, ph = H - T - B;
  const x = (i) => L + (i / (xs.length - 1)) * pw;
  const y = (v) => T + ph - (v / top) * ph;
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#667085"; g.strokeStyle = "#e4e7ec"; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    g.beginPath(); g.moveTo(L, y(v)); g.lineTo(W - R, y(v)); g.stroke();
    g.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(2), 4, y(v) + 4);
  }
  g.fillText("-" + (xs.length - 1) + " s", L, H - 6);
  g.fillText("now", W - R - 22, H - 6);
  // per-second starts as bars
  g.fillStyle = "rgba(37, 99, 235, 0.15)";
  const bw = Math.max(pw / xs.length - 1, 1);
  xs.forEach((v, i) => { if (v > 0) g.fillRect(x(i) - bw / 2, y(v), bw, T + ph - y(v)); });
  const line = (v, color, dash) => {
    g.setLineDash(dash); g.strokeStyle = color; g.lineWidth = 2;
    g.beginPath(); g.moveTo(L, y(v)); g.lineTo(W - R, y(v)); g.stroke(); g.setLineDash([]);
  };
  line(policy, "#98a2b3", [6, 4]);
  if (learned > 0) line(learned, "#f79009", [2, 3]);
  g.strokeStyle = "#2563eb"; g.lineWidth = 2;
  g.beginPath();
  avg.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
  g.stroke();
  $("t-achieved").textContent = avg[avg.length - 1].toFixed(2) + "/s";
}

// ---- actions ----

let pending = null; // the action waiting for its confirmation

function ask(text, run) {
  pending = run;
  $("confirm-text").textContent = text;
  $("confirm").hidden = false;
  $("act-result").textContent = "";
}

async function post(path, body) {
  const res = $("act-result");
  try {
    const r = await api(path + "?id=" + encodeURIComponent(tenantID), {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Quotaq-Token": meta.token },
      body: JSON.stringify(body || {}),
    });
    res.className = "result";
    res.textContent = r.message;
  } catch (err) {
    res.className = "result failed";
    res.textContent = err.message;
  }
  loadTenant();
}

function setupActions() {
  $("act-reset-quota").addEventListener("click", () =>
    ask("Reset the quota of " + JSON.stringify(tenantID) + "? Its used count goes back to 0 and its parked tasks run again.",
      () => post("api/tenant/reset-quota")));
  $("act-release-hold").addEventListener("click", () =>
    ask("Release the hold of " + JSON.stringify(tenantID) + "? Its pause ends and it runs at its policy's rate again, " +
      "not at a rate slowed by its upstream's refusals; its bookings and quota stay.", () => post("api/tenant/release-hold")));
  $("policy-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const body = {};
    for (const el of $("policy-form").elements) {
      if (!el.name || el.value.trim() === "") continue;
      body[el.name] = el.name === "quota_period" ? el.value.trim() : Number(el.value);
    }
    if (Object.keys(body).length === 0) {
      $("act-result").className = "result failed";
      $("act-result").textContent = "give the fields to change";
      return;
    }
    const what = Object.entries(body).map(([k, v]) => k + " " + v).join(", ");
    ask("Change the policy of " + tenantID + ": " + what + "? The other fields stay.", () => post("api/tenant/policy", body));
  });
  $("confirm-yes").addEventListener("click", () => { $("confirm").hidden = true; const run = pending; pending = null; if (run) run(); });
  $("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; pending = null; });
}

// ---- routing ----

function route() {
  viewGen++;
  clearInterval(timer);
  showError(null);
  $("asof").textContent = "";
  delete document.body.dataset.loaded;
  const m = location.hash.match(/^#\/tenant\/(.+)$/);
  $("view-table").hidden = !!m;
  $("view-tenant").hidden = !m;
  if (m) {
    tenantID = decodeURIComponent(m[1]);
    live = null;
    $("t-name").textContent = tenantID;
    $("actions").hidden = !meta.actions;
    $("confirm").hidden = true;
    $("act-result").textContent = "";
    loadTenant();
    loadLive();
    let n = 0;
    timer = setInterval(() => { loadLive(); if (++n % 5 === 0) loadTenant(); }, 1000);
  } else {
    loadTable();
    timer = setInterval(loadTable, 5000);
  }
}

async function start() {
  try { meta = await api("api/meta"); } catch (err) { showError(err); }
  $("mode").textContent = meta.actions ? "actions on" : "read-only";
  setupTable();
  setupActions();
  window.addEventListener("hashchange", route);
  route();
}

start();
