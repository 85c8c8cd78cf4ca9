// Shared by every page: the API client (Bearer key from session storage), messages, DOM helpers, charts.
const KEY = "tf_key";
const messages = JSON.parse(document.getElementById("tf-messages").textContent);
export const params = JSON.parse(document.getElementById("tf-params").textContent);
export const lang = document.documentElement.lang.startsWith("zh") ? "zh" : "en";

/** The message `key`, with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

export function apiKey() { return sessionStorage.getItem(KEY); }
export function setApiKey(k) { sessionStorage.setItem(KEY, k); }
export function signOut() { sessionStorage.removeItem(KEY); location.href = "/console/login"; }

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status; this.body = body;
  }
}

/** Call the public API. `body` is sent as JSON, `form` as multipart; the parsed JSON is returned. */
export async function api(path, { method = "GET", body, form, key, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${key || apiKey()}` };
  let payload;
  if (form) payload = form;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const r = await fetch(path, { method, headers, body: payload });
  if (raw && r.ok) return r;
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (r.status === 401 && !key) { sessionStorage.removeItem(KEY); location.href = loginUrl(); }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** POST `body` to a route that answers with Server-Sent Events (OpenAI's `stream: true`) and call `onData` with
 * each `data:` event's JSON as it arrives, until `data: [DONE]`. `signal` (an AbortController's) stops it: the
 * request is aborted and an AbortError thrown. An error status, or an error sent inside the stream, throws an
 * ApiError as api() does. */
export async function apiStream(path, body, { signal, onData } = {}) {
  const r = await fetch(path, { method: "POST", signal, body: JSON.stringify(body), headers: {
    Authorization: `Bearer ${apiKey()}`, "Content-Type": "application/json", Accept: "text/event-stream" } });
  if (!r.ok) {
    let data = null;
    try { data = await r.json(); } catch (e) { /* not JSON */ }
    if (r.status === 401) { sessionStorage.removeItem(KEY); location.href = loginUrl(); }
    throw new ApiError(r.status, data);
  }
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n/g, "\n"); // a CR LF split across reads is joined first
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (!data) continue; // a comment or keep-alive
      if (data === "[DONE]") { reader.cancel().catch(() => {}); return; }
      const obj = JSON.parse(data);
      if (obj.error) throw new ApiError(r.status, obj);
      onData(obj);
    }
  }
}

function loginUrl() { return `/console/login?next=${encodeURIComponent(location.pathname + location.search)}`; }

/** Build an element: el("a", {href: "/x", class: "c"}, "text", child). Text is never parsed as HTML. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(e.style, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
export function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
export function show(node, on = true) { node.hidden = !on; }

export function fmtNumber(n, digits) {
  if (n === null || n === undefined) return "—";
  if (typeof n !== "number") return String(n);
  return digits === undefined ? n.toLocaleString(lang === "zh" ? "zh-CN" : "en") :
    n.toLocaleString(lang === "zh" ? "zh-CN" : "en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
export function fmtBytes(b) {
  if (b === null || b === undefined) return "—";
  const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}
export function fmtTime(ts) {
  if (!ts) return "—";
  return new Date(ts * 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en", { dateStyle: "medium", timeStyle: "short" });
}
export function fmtClock(ts) {
  return ts ? new Date(ts * 1000).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en", { timeStyle: "medium" }) : "—";
}
export function statusBadge(status) {
  return el("span", { class: `badge ${status}` }, t(`status.${status}`));
}
export function stat(label, value, id) {
  return el("div", { class: "stat", id }, el("span", { class: "k" }, label), el("span", { class: "v" }, value));
}
export function errorText(e) {
  return e instanceof ApiError ? serverError(e.body && e.body.error, { fallback: e.message }) : (e && e.message) || String(e);
}

// ---- what the server says, in the page's language (the API's messages are English) ----
/** A metric's name: `eval_accuracy` -> "Accuracy" (with `dev`: "dev Accuracy"); an unknown one as it is. */
export function metricName(key, dev = false) {
  const k = String(key).replace(/^eval_/, "");
  const name = messages[`metric.${k}`] ?? k;
  return dev && key.startsWith("eval_") ? t("metric.dev", { name }) : name;
}
const what = (w) => {
  const m = /^Attempt (\d+)$/.exec(w);
  if (m) return t("event.what_attempt", { n: m[1] });
  return { "File validation": t("event.what_validation"), Cancel: t("event.what_cancel"), Pause: t("event.what_pause") }[w] ?? w;
};
// the job events the server writes (jobs/queue.py, worker.py, runner.py, service.py), newest wording first
const EVENTS = [
  [/^Created fine-tuning job: (?<id>\S+)$/, "event.created"],
  [/^Validating files on worker (?<worker>.+)\.$/, "event.validating"],
  [/^Validated (?<train>\d+) training examples, (?<dev>\d+) validation examples\.$/, "event.validated_dev"],
  [/^Validated (?<train>\d+) training examples\.$/, "event.validated"],
  [/^Files validated; the job is queued for training\.$/, "event.queued"],
  [/^Attempt (?<n>\d+): training on worker (?<worker>.+)\.$/, "event.attempt"],
  [/^Training started \(attempt (?<n>\d+)\)\.$/, "event.started"],
  [/^Step (?<step>\d+(?:\/\d+)?): (?<metrics>.*)$/, "event.step"],
  [/^Checkpoint saved at step (?<step>\d+)\.$/, "event.checkpoint"],
  [/^Resuming from the checkpoint at step (?<step>\d+) \(saved by (?<name>.+)\)\.$/, "event.resuming"],
  [/^An earlier attempt \((?<name>.+)\) had finished training; using its model\.$/, "event.earlier_finished"],
  [/^The job has successfully completed: new model (?<model>.+)\.$/, "event.succeeded"],
  [/^Fine-tuning job failed: (?<message>[\s\S]*)$/, "event.failed"],
  [/^Cancellation requested\.$/, "event.cancel_requested"],
  [/^(?<what>Cancel|Pause) requested; stopping at the next step\.$/, "event.control_requested"],
  [/^Fine-tuning job cancelled\.$/, "event.cancelled"],
  [/^Pause requested\.$/, "event.pause_requested"],
  [/^Fine-tuning job paused\.$/, "event.paused"],
  [/^Fine-tuning job paused; resume it to continue from its last checkpoint\.$/, "event.paused_resumable"],
  [/^Pause request withdrawn\.$/, "event.pause_withdrawn"],
  [/^Fine-tuning job resumed; it continues from its last checkpoint\.$/, "event.resumed"],
  [/^(?<what>Attempt \d+|File validation) failed \((?<why>.+)\); the job is queued again and will resume from its last checkpoint \(failed attempts: (?<n>\d+) of (?<limit>\d+)\)\.$/, "event.retry"],
  [/^(?<reason>.+); the job is queued again and will resume from its last checkpoint\.$/, "event.requeued"],
];
/** A message the server wrote (a job event), in the page's language; one it does not know is shown as it is. */
export function serverText(message) {
  if (lang !== "zh" || typeof message !== "string") return message;
  for (const [re, key] of EVENTS) {
    const m = re.exec(message);
    if (!m) continue;
    const vars = { ...m.groups };
    if (vars.what) vars.what = what(vars.what);
    if (vars.metrics !== undefined) {
      vars.metrics = vars.metrics === "logged" ? t("event.logged")
        : vars.metrics.replace(/([a-z_0-9]+)=/g, (_, k) => `${metricName(k, true)}=`).replace(/, /g, "，");
    }
    if (vars.message !== undefined) vars.message = serverText(vars.message);
    return t(key, vars);
  }
  return message;
}
/** An API error (`{code, message}`): in Chinese, what its code means and then the server's details. With `code`,
 * the English form is prefixed by the code, as the job page shows it. */
export function serverError(err, { fallback = "", code = false } = {}) {
  const message = (err && err.message) || fallback;
  const c = err && err.code;
  if (lang === "zh" && c && `error.${c}` in messages) return `${t(`error.${c}`)}${t("error.detail", { message })}`;
  return code && c ? `${c}: ${message}` : message;
}
export function showError(node, e) { node.textContent = e ? errorText(e) : ""; node.hidden = !e; }

export function flash(text) {
  const f = $("#flash"); if (!f) return;
  f.textContent = text; f.hidden = false;
  clearTimeout(flash.timer); flash.timer = setTimeout(() => { f.hidden = true; }, 6000);
}

export async function copyText(text, button) {
  try { await navigator.clipboard.writeText(text); }
  catch (e) { // clipboard blocked (http, permissions): select the text so the user can copy it
    const range = document.createRange(); range.selectNodeContents(button.previousElementSibling);
    const s = getSelection(); s.removeAllRanges(); s.addRange(range);
  }
  const old = button.textContent; button.textContent = t("action.copied");
  setTimeout(() => { button.textContent = old; }, 1500);
}

// ---- charts (Chart.js, vendored; global `Chart`) ----
export function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
export function palette() { return [1, 2, 3, 4, 5].map((i) => cssVar(`--chart-${i}`)); }
export function chartDefaults() {
  if (!window.Chart) return;
  Chart.defaults.color = cssVar("--muted");
  Chart.defaults.borderColor = cssVar("--chart-grid");
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
}
const charts = new Map();
/** Create or update the chart on canvas `id`; the canvas records how many points it shows (data-points). */
export function chart(id, config) {
  const canvas = document.getElementById(id);
  const points = config.data.datasets.reduce((n, d) => n + d.data.length, 0);
  canvas.dataset.points = String(points);
  let c = charts.get(id);
  if (c && c.config.type === config.type) {
    c.data = config.data; c.options = config.options || c.options; c.update("none");
  } else {
    if (c) c.destroy();
    c = new Chart(canvas, config);
    charts.set(id, c);
  }
  return c;
}
export function redrawCharts() {
  chartDefaults();
  for (const c of charts.values()) {
    const p = palette();
    c.data.datasets.forEach((d, i) => { d.borderColor = d.backgroundColor = p[i % p.length]; });
    c.options.scales && Object.values(c.options.scales).forEach((s) => {
      s.grid = { ...(s.grid || {}), color: cssVar("--chart-grid") }; s.ticks = { ...(s.ticks || {}), color: cssVar("--muted") };
    });
    c.update("none");
  }
}

// ---- page chrome: theme, language, who am I, sign out ----
function setupChrome() {
  const root = document.documentElement;
  const toggle = $("#theme-toggle");
  const sync = () => toggle.setAttribute("aria-pressed", String(root.dataset.theme === "dark"));
  sync();
  toggle.addEventListener("click", () => {
    root.dataset.theme = root.dataset.theme === "dark" ? "light" : "dark";
    try { localStorage.setItem("tf_theme", root.dataset.theme); } catch (e) { /* ignore */ }
    sync(); redrawCharts();
  });
  $("#lang-select").addEventListener("change", (ev) => {
    const u = new URL(location.href); u.searchParams.set("lang", ev.target.value); location.href = u.toString();
  });
  // a file dropped outside the drop zone must not make the browser navigate away to it
  for (const name of ["dragover", "drop"]) window.addEventListener(name, (e) => e.preventDefault());
  const out = $("#sign-out");
  if (out) out.addEventListener("click", signOut);
  chartDefaults();
}

/** Every page but the login page: require a key, show who is signed in. Returns the key's principal. */
export async function requireKey() {
  setupChrome();
  if (!apiKey()) { location.href = loginUrl(); return new Promise(() => {}); }
  const me = await api("/v1/api_keys/current");
  const who = $("#who");
  if (who) { who.textContent = `${me.tenant} · ${me.plan}`; who.title = who.textContent; }
  return me;
}
export { setupChrome };

/** Run `fn` every `ms` while `keepGoing()` is true and the page is visible. */
export function poll(fn, ms, keepGoing = () => true) {
  let timer = null;
  const tick = async () => {
    if (!keepGoing()) return;
    if (document.visibilityState === "visible") { try { await fn(); } catch (e) { console.warn(e); } }
    if (keepGoing()) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => clearTimeout(timer);
}

/** Mark the page as initialised (its data loaded, its handlers attached): tests and screenshots wait for it. */
export function ready() { document.documentElement.dataset.ready = "1"; }
