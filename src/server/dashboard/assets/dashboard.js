// r2-sync dashboard: polls /api/dashboard and shows it. Every piece of data goes into the
// page as text (textContent), never as markup: file names come from strangers' uploads.
"use strict";

const POLL_MS = 1500;
let session = null;
let lastData = null;

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function when(secs) {
  return secs ? new Date(secs * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : "–";
}

function replace(parent, children) {
  parent.replaceChildren(...children);
}

function bar(fraction, cls) {
  const outer = el("div", "bar");
  const fill = el("div", "fill" + (cls ? " " + cls : ""));
  fill.style.width = Math.max(0, Math.min(100, fraction * 100)).toFixed(1) + "%";
  outer.appendChild(fill);
  return outer;
}

function renderNow(now, time) {
  const pass = now.pass;
  $("pass").textContent = pass
    ? "Pass running since " + when(pass.started_at) + ": " + pass.done + " of " + pass.claimed + " files done"
    : "No pass running.";
  $("next").textContent = !now.scheduled
    ? "No scheduler in this process."
    : now.next_pass_at && !pass
      ? "Next pass " + when(now.next_pass_at) + " (in " + duration(Math.max(0, now.next_pass_at - time)) + ")"
      : "";
  $("sync-now").disabled = !now.scheduled || !!pass;
  replace($("transfers"), now.transfers.map(transferItem));
}

function transferItem(t) {
  const li = el("li", "transfer");
  li.dataset.mediaId = t.media_id;
  li.dataset.bytes = t.bytes;
  li.appendChild(el("div", "name", t.name));
  li.appendChild(bar(t.total ? t.bytes / t.total : 0));
  let text = bytes(t.bytes) + " of " + bytes(t.total) + " · " + bytes(t.rate_bytes_per_s) + "/s";
  if (t.eta_s !== null) text += " · ETA " + duration(t.eta_s);
  if (t.resumed_from > 0) text += " · resumed from " + bytes(t.resumed_from);
  li.appendChild(el("div", "label muted", text));
  return li;
}

function renderHealth(h) {
  const status = $("status");
  status.textContent = h.status === "ok" ? "healthy" : "needs attention";
  status.className = "pill " + (h.status === "ok" ? "ok" : "fail");
  replace($("checks"), Object.keys(h.checks).map((name) => {
    const c = h.checks[name];
    const li = el("li");
    li.appendChild(el("span", null, name));
    li.appendChild(el("span", c.ok ? "ok" : "fail", c.ok ? "ok (" + c.latency_ms + " ms)" : c.error));
    return li;
  }));
  const a = h.archive;
  const used = a && a.total ? 1 - a.free / a.total : 0;
  $("space-text").textContent = a ? bytes(a.free) + " free of " + bytes(a.total) : "unknown";
  replace($("space").querySelector(".bar"), [bar(used, used > 0.9 ? "high" : "").firstChild]);
  const o = h.owed;
  const owed = o.records + o.failure_records + o.deletes;
  $("owed").textContent = owed === 0
    ? "Nothing owed to PostgreSQL or the bucket."
    : "Owed: " + o.records + " archive records, " + o.failure_records + " failure records (PostgreSQL), " +
      o.deletes + " deletes (bucket).";
  $("last-ok").textContent = "Last clean pass: " + (h.last_successful_pass ? when(h.last_successful_pass) : "none since start");
}

function renderHistory(hist) {
  const max = Math.max(1, ...hist.daily.map((d) => d.bytes));
  replace($("chart"), hist.daily.map((d) => {
    const b = el("div");
    b.style.height = (100 * d.bytes / max).toFixed(1) + "%";
    b.title = d.day + ": " + bytes(d.bytes);
    return b;
  }));
  const rows = hist.passes.map((p) => {
    const tr = el("tr");
    tr.appendChild(el("td", null, when(p.started_at)));
    tr.appendChild(el("td", null, p.archived + "/" + p.claimed + (p.failed ? " (" + p.failed + " failed)" : "")));
    tr.appendChild(el("td", null, bytes(p.bytes)));
    tr.appendChild(el("td", null, duration(p.duration_ms / 1000)));
    tr.appendChild(el("td", p.outcome, p.outcome));
    return tr;
  });
  if (rows.length === 0) {
    const tr = el("tr");
    const td = el("td", "muted", "No pass has done anything since start.");
    td.colSpan = 5;
    tr.appendChild(td);
    rows.push(tr);
  }
  replace($("passes").tBodies[0], rows);
  const items = hist.failures.map(failureItem);
  if (items.length === 0) items.push(el("li", "muted", "No failures."));
  replace($("failures"), items);
}

function failureItem(f) {
  const li = el("li", "failure");
  li.dataset.mediaId = f.media_id;
  const head = el("div", "label");
  head.appendChild(el("span", "name", f.name));
  head.appendChild(el("span", "muted", "media " + f.media_id + " · " + when(f.when)));
  li.appendChild(head);
  li.appendChild(el("div", "reason", f.reason));
  const retry = el("button", "small", f.kind === "transient" ? "Retry now" : "Retry");
  retry.type = "button";
  retry.addEventListener("click", () => act("api/retry/" + f.media_id));
  li.appendChild(retry);
  return li;
}

function render(data) {
  lastData = data;
  renderNow(data.now, data.time);
  renderHealth(data.health);
  renderHistory(data.history);
  $("updated").textContent = "updated " + new Date(data.time * 1000).toLocaleTimeString();
}

async function poll() {
  try {
    const resp = await fetch("api/dashboard", { cache: "no-store" });
    if (resp.ok) render(await resp.json());
    else $("updated").textContent = "dashboard answered " + resp.status;
  } catch (e) {
    $("status").textContent = "unreachable";
    $("status").className = "pill fail";
  }
  setTimeout(poll, POLL_MS);
}

function adminToken(forget) {
  if (forget) sessionStorage.removeItem("r2sync-admin");
  let token = sessionStorage.getItem("r2sync-admin");
  if (!token) {
    token = window.prompt("Admin token (ADMIN_TOKEN)") || "";
    if (token) sessionStorage.setItem("r2sync-admin", token);
  }
  return token;
}

async function act(path) {
  const msg = $("action-message");
  try {
    if (!session) session = await (await fetch("api/session", { cache: "no-store" })).json();
    const headers = { "X-CSRF-Token": session.csrf };
    if (session.admin_token_required) headers.Authorization = "Bearer " + adminToken(false);
    const resp = await fetch(path, { method: "POST", headers });
    const body = await resp.json();
    if (resp.status === 401) adminToken(true);
    if (resp.status === 403) session = null;
    msg.textContent = body.message || body.error || String(resp.status);
  } catch (e) {
    msg.textContent = "not sent: " + e;
  }
  setTimeout(() => { if (lastData) render(lastData); }, 0);
}

document.addEventListener("DOMContentLoaded", () => {
  $("sync-now").addEventListener("click", () => act("api/sync"));
  poll();
});
