import { ready, $, api, chart, clear, el, errorText, fmtNumber, lang, palette, requireKey, show, showError, t } from "./app.js";

const BASE = "/v1/solutions/monitor";
await requireKey();

const LOCALE = lang === "zh" ? "zh-CN" : "en";
function fmtWhen(iso) { return new Date(iso).toLocaleString(LOCALE, { dateStyle: "medium", timeStyle: "short" }); }
const HOUR = 3600000, DAY = 86400000;
// an axis tick: the date, with the hour when the chart spans two days or less
function fmtTick(ms, spanMs) {
  const d = new Date(ms);
  return spanMs <= 2 * DAY ? d.toLocaleString(LOCALE, { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString(LOCALE, { month: "short", day: "numeric" });
}
// ticks on local midnights (every few hours for a short window), at most about ten
function timeTicks(startMs, endMs) {
  const span = endMs - startMs;
  const step = span <= 2 * DAY ? 6 * HOUR : Math.max(1, Math.ceil(span / DAY / 10)) * DAY;
  const first = new Date(startMs);
  if (step >= DAY) first.setHours(0, 0, 0, 0); else first.setHours(Math.floor(first.getHours() / 6) * 6, 0, 0, 0);
  const out = [];
  for (let v = first.getTime(); v <= endMs; ) {
    if (v >= startMs) out.push({ value: v });
    const d = new Date(v);
    if (step >= DAY) d.setDate(d.getDate() + step / DAY); else d.setTime(v + step);  // DST-safe for days
    v = d.getTime();
  }
  return out;
}
function polarityBadge(item) {
  const cls = item.polarity === "negative" ? "bad" : item.polarity === "positive" ? "ok" : "";
  return el("span", { class: `badge ${cls}` }, item.label);
}

async function loadEntities() {
  const entities = (await api(`${BASE}/entities`)).data;
  const select = clear($("#entity"));
  select.append(el("option", { value: "" }, t("mon.all_items")));
  for (const e of entities) select.append(el("option", { value: e.entity }, `${e.entity} (${e.mentions})`));
  if (entities.length) select.value = entities[0].entity;
}

// object URL of the last PNG, revoked when replaced
let pngUrl = null;

async function loadSeries() {
  const entity = $("#entity").value;
  const bucket = $("#bucket").value;
  const days = Math.max(1, Math.min(365, Number($("#days").value) || 7));
  const items = (await api(`${BASE}/items?limit=1`)).data;
  const end = items.length ? new Date(new Date(items[0].published_at).getTime() + 1000) : new Date();
  const start = new Date(end.getTime() - days * 86400000);
  const q = new URLSearchParams({ bucket, start: start.toISOString(), end: end.toISOString() });
  if (entity) q.set("entity", entity);
  const data = (await api(`${BASE}/series?${q}`)).data;
  const p = palette();
  const points = (key) => data.filter((d) => d[key] !== null).map((d) => ({ x: Date.parse(d.start), y: d[key] }));
  chart("series-chart", {
    type: "line",
    data: { datasets: [
      { label: t("mon.mean_score"), data: points("mean_score"), borderColor: p[0], backgroundColor: p[0], pointRadius: 2, yAxisID: "y" },
      { label: t("mon.negative_share"), data: points("negative_share"), borderColor: p[1], backgroundColor: p[1], pointRadius: 2, borderDash: [4, 3], yAxisID: "y" },
      { label: t("mon.items"), data: data.map((d) => ({ x: Date.parse(d.start), y: d.count })), type: "bar", borderColor: p[2], backgroundColor: p[2], yAxisID: "n" },
    ] },
    options: { scales: {
      // the requested window, data or not: an empty chart must not fall back to 0..1 (1 January 1970)
      x: { type: "linear", min: start.getTime(), max: end.getTime(), offset: false, grid: { offset: false },
        afterBuildTicks: (axis) => { axis.ticks = timeTicks(start.getTime(), end.getTime()); },
        ticks: { callback: (v) => fmtTick(v, end.getTime() - start.getTime()) } },
      y: { min: -1, max: 1, title: { display: true, text: t("mon.sentiment") } },
      n: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: t("mon.items") } },
    }, plugins: { legend: { position: "bottom" } } },
  });
  show($("#series-empty"), data.length === 0);
  const link = $("#png-link");
  show(link, data.length > 0);
  link.onclick = async (ev) => {
    ev.preventDefault();
    let r;
    try { r = await api(`${BASE}/chart.png?${q}`, { raw: true }); } catch (e) { showError($("#mon-error"), e); return; }
    if (pngUrl) URL.revokeObjectURL(pngUrl);
    pngUrl = URL.createObjectURL(await r.blob());
    window.open(pngUrl, "_blank", "noopener");
  };
}

async function loadAlerts() {
  const alerts = (await api(`${BASE}/alerts?limit=50`)).data;
  const tbody = clear($("#alerts-table tbody"));
  for (const a of alerts) {
    const texts = el("ul", {}, ...a.items.slice(0, 3).map((i) => el("li", {}, i.text.slice(0, 120))));
    tbody.append(el("tr", {}, el("td", { class: "nowrap" }, fmtWhen(a.at)), el("td", {}, a.entity),
      el("td", {}, t(`mon.${a.metric}`)), el("td", {}, `${fmtNumber(a.value, 2)} / ${fmtNumber(a.expected, 2)}`), el("td", {}, texts)));
  }
  show($("#alerts-empty"), alerts.length === 0);
}

async function loadItems() {
  const items = (await api(`${BASE}/items?limit=50`)).data;
  const tbody = clear($("#items-table tbody"));
  for (const i of items) {
    tbody.append(el("tr", {}, el("td", { class: "nowrap" }, fmtWhen(i.published_at)), el("td", {}, polarityBadge(i)),
      el("td", {}, (i.title ? `${i.title}. ` : "") + i.text.slice(0, 160)), el("td", {}, i.entities.join(", ") || "—")));
  }
  show($("#items-empty"), items.length === 0);
}

async function loadRules() {
  const rules = (await api(`${BASE}/rules`)).data;
  const tbody = clear($("#rules-table tbody"));
  for (const r of rules) {
    const del = el("button", { type: "button", class: "danger", "aria-label": `${t("mon.delete")} ${r.name || r.id}` }, t("mon.delete"));
    del.addEventListener("click", async () => {
      try { await api(`${BASE}/rules/${encodeURIComponent(r.id)}`, { method: "DELETE" }); await loadRules(); }
      catch (e) { showError($("#rule-error"), e); }
    });
    const channels = [r.webhook_url, ...r.emails].filter(Boolean).join(", ") || "—";
    tbody.append(el("tr", {}, el("td", {}, r.name || r.id), el("td", {}, r.entity), el("td", {}, t(`mon.${r.metric}`)),
      el("td", {}, `${r.window_minutes} min`), el("td", {}, `z ≥ ${r.threshold}`), el("td", {}, channels), el("td", {}, del)));
  }
  show($("#rules-empty"), rules.length === 0);
}

async function loadWatch() {
  const watch = (await api(`${BASE}/watchlist`)).data;
  const tbody = clear($("#watch-table tbody"));
  for (const w of watch) tbody.append(el("tr", {}, el("td", {}, w.name), el("td", {}, w.aliases.join(", ") || "—")));
  show($("#watch-empty"), watch.length === 0);
}

$("#rule-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = { name: f.get("name"), entity: f.get("entity") || "*", metric: f.get("metric"),
    window_minutes: Number(f.get("window_minutes")), threshold: Number(f.get("threshold")),
    webhook_url: f.get("webhook_url") || null,
    emails: String(f.get("emails") || "").split(",").map((s) => s.trim()).filter(Boolean) };
  try {
    await api(`${BASE}/rules`, { method: "POST", body });
    showError($("#rule-error"), null);
    ev.target.reset();
    await loadRules();
  } catch (e) { showError($("#rule-error"), e); }
});

for (const id of ["#entity", "#bucket", "#days"]) {
  $(id).addEventListener("change", () => loadSeries().catch((e) => showError($("#mon-error"), e)));
}

try {
  await loadEntities();
  await Promise.all([loadSeries(), loadAlerts(), loadItems(), loadRules(), loadWatch()]);
} catch (e) {
  showError($("#mon-error"), e);
  $("#mon-error").textContent = errorText(e);
}
ready();
