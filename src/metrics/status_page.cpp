#include "metrics/status_page.h"

namespace balance::metrics {
namespace {

// Everything inline: the server's Content-Security-Policy forbids any other source. The script
// keeps a short history per channel (keyed by group/channel/backend) and derives the rates from
// the counters of successive samples and the server's own sample times.
constexpr std::string_view kPage = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>balance status</title>
<style>
:root {
  --bg: #f4f6f9; --panel: #ffffff; --text: #18202c; --muted: #677285; --line: #e2e6ed;
  --conn: #7c3aed; --sent: #2563eb; --rcvd: #d97706;
  --ok: #166534; --ok-bg: #dcfce7; --off: #4b5563; --off-bg: #e9ecf1;
  --bad: #991b1b; --bad-bg: #fee2e2; --warn: #854d0e; --warn-bg: #fef3c7;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0e131a; --panel: #161c25; --text: #e4e9f0; --muted: #8a95a7; --line: #273142;
    --conn: #a78bfa; --sent: #60a5fa; --rcvd: #fbbf24;
    --ok: #86efac; --ok-bg: #14321f; --off: #aab3c2; --off-bg: #262e3b;
    --bad: #fca5a5; --bad-bg: #3d1717; --warn: #fde68a; --warn-bg: #3a2f10;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 12px 24px;
  background: var(--panel); border-bottom: 1px solid var(--line); }
.brand { font-size: 18px; font-weight: 650; }
.brand small { color: var(--muted); font-size: 13px; font-weight: 400; margin-left: 6px; }
.live { margin-left: auto; color: var(--muted); font-size: 13px; }
.live::before { content: ""; display: inline-block; width: 8px; height: 8px; border-radius: 50%;
  margin-right: 7px; background: var(--muted); vertical-align: 1px; }
.live.up::before { background: #22c55e; }
.live.down { color: var(--bad); }
.live.down::before { background: #ef4444; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 24px 4px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(165px, 1fr)); gap: 12px;
  margin-bottom: 20px; }
.tile { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 11px 14px; }
.label { color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .06em; }
.tile .value { font-size: 21px; font-weight: 600; margin-top: 2px; }
.num, .tile .value, td { font-variant-numeric: tabular-nums; }
.sub { color: var(--muted); font-size: 12px; }
.tile svg { margin-top: 6px; width: 100%; }
.group { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  margin-bottom: 18px; overflow: hidden; }
.group h2 { display: flex; align-items: center; gap: 10px; margin: 0; padding: 11px 16px;
  font-size: 15px; border-bottom: 1px solid var(--line); }
.group h2 .meta { margin-left: auto; color: var(--muted); font-size: 13px; font-weight: 400; }
.scroll { overflow-x: auto; }
table { width: 100%; min-width: 1160px; border-collapse: collapse; table-layout: fixed; }
th { padding: 7px 12px; text-align: right; white-space: nowrap; color: var(--muted);
  font-size: 12px; font-weight: 500; border-bottom: 1px solid var(--line); }
td { padding: 7px 12px; text-align: right; white-space: nowrap; border-bottom: 1px solid var(--line); }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:hover { background: color-mix(in srgb, var(--line) 35%, transparent); }
th.l, td.l { text-align: left; }
td.backend { overflow: hidden; text-overflow: ellipsis; font-family: ui-monospace, "SF Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 13px; }
tr.disabled td:not(.state) { color: var(--muted); }
.pill { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 500; }
.pill + .pill { margin-left: 4px; }
.pill.ok { color: var(--ok); background: var(--ok-bg); }
.pill.off { color: var(--off); background: var(--off-bg); }
.pill.bad { color: var(--bad); background: var(--bad-bg); }
.pill.warn { color: var(--warn); background: var(--warn-bg); }
.pill.type { color: var(--muted); background: var(--off-bg); font-weight: 400; }
.key { display: inline-block; width: 10px; height: 3px; border-radius: 2px; vertical-align: 3px; margin-right: 4px; }
.key.conn { background: var(--conn); } .key.sent { background: var(--sent); } .key.rcvd { background: var(--rcvd); }
.c-conn { color: var(--conn); } .c-sent { color: var(--sent); } .c-rcvd { color: var(--rcvd); }
svg.spark { display: block; height: 28px; overflow: visible; }
td svg.spark { width: 104px; margin-left: auto; }
td .sub { line-height: 1.3; }
svg.spark polyline { fill: none; stroke-width: 1.6; stroke-linejoin: round; vector-effect: non-scaling-stroke; }
svg.spark polygon { stroke: none; opacity: .13; }
svg.spark .conn { stroke: var(--conn); fill: var(--conn); }
svg.spark .sent { stroke: var(--sent); fill: var(--sent); }
svg.spark .rcvd { stroke: var(--rcvd); fill: var(--rcvd); }
svg.spark .base { stroke: var(--line); stroke-width: 1; }
svg.spark.idle polyline { stroke: var(--muted); opacity: .35; }
.empty { padding: 28px; text-align: center; color: var(--muted); }
footer { padding: 4px 24px 24px; text-align: center; color: var(--muted); font-size: 12px; }
footer a { color: inherit; }
</style>
</head>
<body>
<header>
  <div class="brand">balance<small id="version"></small></div>
  <div id="live" class="live">connecting&hellip;</div>
</header>
<main>
  <section class="tiles">
    <div class="tile"><div class="label">Uptime</div><div class="value" id="uptime">&ndash;</div>
      <div class="sub" id="started">&nbsp;</div></div>
    <div class="tile"><div class="label">Open connections</div><div class="value" id="open">&ndash;</div>
      <div class="sub" id="setup">&nbsp;</div></div>
    <div class="tile"><div class="label">Accepted</div><div class="value" id="accepted">&ndash;</div>
      <div class="sub" id="accepted-rate">&nbsp;</div><div id="accepted-chart"></div></div>
    <div class="tile"><div class="label">Refused</div><div class="value" id="refused">&ndash;</div>
      <div class="sub" id="refused-rate">no channel would take them</div></div>
    <div class="tile"><div class="label">Traffic</div><div class="value" id="traffic">&ndash;</div>
      <div class="sub" id="traffic-split">&nbsp;</div><div id="traffic-chart"></div></div>
  </section>
  <div id="groups"><div class="empty">Waiting for the first sample&hellip;</div></div>
</main>
<footer>Refreshed every second from <a href="status.json">/status.json</a> &middot;
  Prometheus metrics at <a href="metrics">/metrics</a> &middot; charts show the last two minutes</footer>
<script>
"use strict";
const PERIOD_MS = 1000, HISTORY = 120, SVGNS = "http://www.w3.org/2000/svg";
const TYPES = { "round-robin": "round robin", "hash": "hash", "least-connections": "least connections" };
const channels = new Map();  // "g/c" -> per-channel view and history
const groups = new Map();    // g -> group view
const totals = { prev: null, accepted: [], sent: [], rcvd: [] };

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};
const int = (n) => n.toLocaleString("en-US");
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + units[i];
}
const byteRate = (r) => r === null ? "\u2013" : bytes(r) + "/s";
const connRate = (r) => r === null ? "\u2013" : (r < 10 ? r.toFixed(2) : r < 100 ? r.toFixed(1) : r.toFixed(0)) + "/s";
function duration(s) {
  s = Math.max(0, Math.floor(s));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return d + "d " + h + "h " + m + "m";
  if (h) return h + "h " + m + "m";
  return m + "m " + (s % 60) + "s";
}
// Per second between two counter readings; a counter that went down was reset: no rate.
const perSecond = (now, before, dt) => (before === undefined || dt <= 0 || now < before) ? 0 : (now - before) / dt;
const push = (list, v) => { list.push(v); if (list.length > HISTORY) list.shift(); };

// A sparkline: one line (with a faint area under it) per series, all on the same scale.
function makeSpark(classes, width) {
  const svg = document.createElementNS(SVGNS, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + width + " 28");
  svg.setAttribute("preserveAspectRatio", "none");
  const base = document.createElementNS(SVGNS, "line");
  base.setAttribute("class", "base");
  base.setAttribute("x1", 0); base.setAttribute("x2", width);
  base.setAttribute("y1", 27.5); base.setAttribute("y2", 27.5);
  svg.appendChild(base);
  svg.series = classes.map((cls) => {
    const area = document.createElementNS(SVGNS, "polygon");
    const line = document.createElementNS(SVGNS, "polyline");
    area.setAttribute("class", cls); line.setAttribute("class", cls);
    svg.appendChild(area); svg.appendChild(line);
    return { area, line };
  });
  svg.width_ = width;
  return svg;
}
function drawSpark(svg, lists, title) {
  let max = 0;
  for (const l of lists) for (const v of l) max = Math.max(max, v);
  svg.classList.toggle("idle", max === 0);
  const step = svg.width_ / (HISTORY - 1);
  lists.forEach((list, k) => {
    const x0 = (HISTORY - list.length) * step;
    const pts = list.map((v, i) => (x0 + i * step).toFixed(1) + "," + (26 - (max > 0 ? v / max * 24 : 0)).toFixed(1));
    const s = svg.series[k];
    s.line.setAttribute("points", pts.join(" "));
    s.area.setAttribute("points", pts.length ? x0.toFixed(1) + ",27 " + pts.join(" ") + " " +
      (x0 + (list.length - 1) * step).toFixed(1) + ",27" : "");
  });
  let t = svg.querySelector("title");
  if (!t) { t = document.createElementNS(SVGNS, "title"); svg.appendChild(t); }
  t.textContent = title;
}

// The columns of a group's table: a heading, a fixed width (the backend takes the rest, so the
// columns of all groups line up), and the fields shown in each cell (a second one in grey below).
const COLUMNS = [
  { title: "#", cls: "l", width: 50, fields: ["index"] },
  { title: "Backend", cls: "l", fields: ["backend"] },
  { title: "State", cls: "l", width: 160, fields: ["state"] },
  { title: "Open", width: 76, fields: ["connections"] },
  { title: "Total", width: 92, fields: ["connections_total"] },
  { title: "Failed", width: 64, fields: ["connect_failures_total"] },
  { title: "Conn/s", width: 76, fields: ["conn_rate"] },
  { title: '<span class="key conn"></span>last 2 min', width: 128, chart: "conn" },
  { title: "Sent", width: 104, fields: ["sent_rate", "sent_bytes_total"] },
  { title: "Received", width: 104, fields: ["rcvd_rate", "received_bytes_total"] },
  { title: '<span class="key sent"></span><span class="key rcvd"></span>last 2 min', width: 128, chart: "bytes" },
];
function makeGroup(g) {
  const section = el("section", "group");
  section.dataset.group = g;
  const h = el("h2");
  const type = el("span", "pill type"), meta = el("span", "meta");
  h.append(el("span", "", "Group " + g), type, meta);
  const table = el("table"), cols = el("colgroup"), head = el("tr");
  for (const col of COLUMNS) {
    const c = cols.appendChild(el("col"));
    if (col.width) c.style.width = col.width + "px";
    head.appendChild(el("th", col.cls)).innerHTML = col.title;
  }
  table.append(cols, el("thead"), el("tbody"));
  table.tHead.appendChild(head);
  section.append(h, el("div", "scroll"));
  section.lastChild.appendChild(table);
  return { section, type, meta, tbody: table.tBodies[0] };
}

function makeChannel(key, backend) {
  const row = el("tr");
  row.dataset.channel = key;
  const cells = {}, sparks = {};
  for (const col of COLUMNS) {
    const td = row.appendChild(el("td", col.cls));
    if (col.chart) {
      sparks[col.chart] = td.appendChild(makeSpark(col.chart === "conn" ? ["conn"] : ["sent", "rcvd"], 104));
      continue;
    }
    col.fields.forEach((f, i) => {
      const holder = col.fields.length === 1 ? td : td.appendChild(el("div", i ? "sub" : ""));
      holder.dataset.field = f;
      cells[f] = holder;
    });
  }
  cells.backend.classList.add("backend");
  cells.state.classList.add("state");
  return { row, cells, backend, connSpark: sparks.conn, bytesSpark: sparks.bytes,
    prev: null, conn: [], sent: [], rcvd: [], samples: 0 };
}

function setNumber(td, value, text) {
  td.dataset.value = value;
  td.textContent = text;
}
function stateOf(ch, checks) {
  const pills = [ch.enabled ? ["enabled", "ok"] : ["disabled", "off"]];
  if (checks && ch.up === false) pills.push(["down", "bad"]);
  else if (checks) pills.push(["up", "ok"]);
  if (ch.max_connections > 0 && ch.connections >= ch.max_connections) pills.push(["full", "warn"]);
  return pills;
}
function updateChannel(view, ch, g, t, checks) {
  const p = view.prev, dt = p ? (t - p.t) / 1000 : 0;
  const rates = p && dt > 0 ? {
    conn: perSecond(ch.connections_total, p.totalc, dt),
    sent: perSecond(ch.sent_bytes_total, p.sent, dt),
    rcvd: perSecond(ch.received_bytes_total, p.rcvd, dt),
  } : null;
  if (rates) { push(view.conn, rates.conn); push(view.sent, rates.sent); push(view.rcvd, rates.rcvd); }
  view.prev = { t, totalc: ch.connections_total, sent: ch.sent_bytes_total, rcvd: ch.received_bytes_total };
  view.samples++;
  const c = view.cells;
  view.row.dataset.samples = view.samples;
  view.row.classList.toggle("disabled", !ch.enabled);
  c.index.textContent = g + "/" + ch.channel;
  c.backend.textContent = c.backend.title = ch.backend;
  const pills = stateOf(ch, checks), key = pills.map((x) => x[0]).join(" ");
  if (c.state.dataset.value !== key) {
    c.state.dataset.value = key;
    c.state.replaceChildren(...pills.map(([text, cls]) => el("span", "pill " + cls, text)));
  }
  setNumber(c.connections, ch.connections, int(ch.connections));
  if (ch.max_connections > 0) c.connections.appendChild(el("span", "sub", " / " + int(ch.max_connections)));
  setNumber(c.connections_total, ch.connections_total, int(ch.connections_total));
  setNumber(c.connect_failures_total, ch.connect_failures_total, int(ch.connect_failures_total));
  setNumber(c.sent_bytes_total, ch.sent_bytes_total, bytes(ch.sent_bytes_total));
  setNumber(c.received_bytes_total, ch.received_bytes_total, bytes(ch.received_bytes_total));
  setNumber(c.conn_rate, rates ? rates.conn : "", connRate(rates && rates.conn));
  setNumber(c.sent_rate, rates ? rates.sent : "", byteRate(rates && rates.sent));
  setNumber(c.rcvd_rate, rates ? rates.rcvd : "", byteRate(rates && rates.rcvd));
  drawSpark(view.connSpark, [view.conn], "connections per second, peak " + connRate(Math.max(0, ...view.conn)));
  drawSpark(view.bytesSpark, [view.sent, view.rcvd], "bytes per second, peak sent " +
    byteRate(Math.max(0, ...view.sent)) + ", received " + byteRate(Math.max(0, ...view.rcvd)));
  return rates;
}

// Puts `children` into `parent` in this order, touching the DOM only when something changed.
function arrange(parent, children) {
  const same = parent.children.length === children.length && children.every((c, i) => parent.children[i] === c);
  if (!same) parent.replaceChildren(...children);
}

function updateGroups(snap) {
  const seenGroups = [], seenChannels = new Set();
  for (const grp of snap.groups) {
    let gv = groups.get(grp.group);
    if (!gv) { gv = makeGroup(grp.group); groups.set(grp.group, gv); }
    gv.type.textContent = TYPES[grp.type] || grp.type;
    const rows = [];
    let open = 0, rate = 0, rated = false;
    for (const ch of grp.channels) {
      const key = grp.group + "/" + ch.channel;
      let view = channels.get(key);
      if (!view || view.backend !== ch.backend) { view = makeChannel(key, ch.backend); channels.set(key, view); }
      const r = updateChannel(view, ch, grp.group, snap.sampled_ms, snap.checks);
      if (r) { rate += r.conn; rated = true; }
      open += ch.connections;
      seenChannels.add(key);
      rows.push(view.row);
    }
    arrange(gv.tbody, rows);
    const n = grp.channels.length;
    gv.meta.textContent = n + (n === 1 ? " channel" : " channels") + " \u00b7 " + int(open) + " open" +
      (rated ? " \u00b7 " + connRate(rate) : "");
    seenGroups.push(gv.section);
  }
  for (const k of [...channels.keys()]) if (!seenChannels.has(k)) channels.delete(k);
  for (const [g, gv] of [...groups]) if (!seenGroups.includes(gv.section)) groups.delete(g);
  if (seenGroups.length === 0) seenGroups.push(el("div", "empty", "No channels configured."));
  arrange($("groups"), seenGroups);
}

function updateTotals(snap) {
  let open = 0, sent = 0, rcvd = 0;
  for (const g of snap.groups) for (const c of g.channels) {
    open += c.connections; sent += c.sent_bytes_total; rcvd += c.received_bytes_total;
  }
  const now = { t: snap.sampled_ms, accepted: snap.accepted_total, refused: snap.refused_total, sent, rcvd };
  const p = totals.prev, dt = p ? (now.t - p.t) / 1000 : 0;
  if (p && dt > 0) {
    const acc = perSecond(now.accepted, p.accepted, dt), ref = perSecond(now.refused, p.refused, dt);
    const s = perSecond(sent, p.sent, dt), r = perSecond(rcvd, p.rcvd, dt);
    push(totals.accepted, acc); push(totals.sent, s); push(totals.rcvd, r);
    $("accepted-rate").textContent = connRate(acc) + " now";
    $("refused-rate").textContent = connRate(ref) + " now \u00b7 no channel would take them";
    $("traffic").textContent = byteRate(s + r);
    $("traffic-split").innerHTML = '<span class="c-sent">\u2191 ' + byteRate(s) + '</span> &nbsp; <span class="c-rcvd">\u2193 ' +
      byteRate(r) + "</span>";
  }
  totals.prev = now;
  $("version").textContent = snap.version;
  $("uptime").textContent = duration(snap.sampled_ms / 1000 - snap.start_time);
  $("started").textContent = "since " + new Date(snap.start_time * 1000).toLocaleString();
  $("open").textContent = int(open);
  $("setup").textContent = snap.threads + (snap.threads === 1 ? " worker thread" : " worker threads") +
    " \u00b7 checks " + (snap.checks ? "on" : "off");
  $("accepted").textContent = int(snap.accepted_total);
  $("refused").textContent = int(snap.refused_total);
  if (!totals.acceptedSpark) {
    totals.acceptedSpark = $("accepted-chart").appendChild(makeSpark(["conn"], 240));
    totals.trafficSpark = $("traffic-chart").appendChild(makeSpark(["sent", "rcvd"], 240));
  }
  drawSpark(totals.acceptedSpark, [totals.accepted], "accepted connections per second");
  drawSpark(totals.trafficSpark, [totals.sent, totals.rcvd], "bytes per second, sent and received");
}

function setLive(ok, text) {
  const live = $("live");
  live.className = "live " + (ok ? "up" : "down");
  live.textContent = text;
}

async function poll() {
  try {
    const res = await fetch("status.json", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const snap = await res.json();
    updateTotals(snap);
    updateGroups(snap);
    setLive(true, "live \u00b7 " + new Date(snap.sampled_ms).toLocaleTimeString());
  } catch (e) {
    setLive(false, "no answer from balance (" + e.message + "), retrying");
  } finally {
    setTimeout(poll, PERIOD_MS);
  }
}
poll();
</script>
</body>
</html>
)HTML";

}  // namespace

std::string_view status_page_html() { return kPage; }

}  // namespace balance::metrics
