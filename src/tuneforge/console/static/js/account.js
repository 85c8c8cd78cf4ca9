import { ready, $, $$, api, chart, clear, copyText, el, errorText, fmtBytes, fmtNumber, fmtTime, palette, requireKey, show, stat, t } from "./app.js";

const me = await requireKey();
const stats = clear($("#account-stats"));
stats.append(stat(t("account.tenant"), me.tenant), stat(t("account.plan"), me.plan),
  stat(t("account.key_scopes"), me.scopes.join(", ")),
  stat(t("account.trial_ends"), me.trial_ends_at ? fmtTime(me.trial_ends_at) : "—"));

function range() {
  const q = new URLSearchParams();
  if ($("#usage-start").value) q.set("start_date", $("#usage-start").value);
  if ($("#usage-end").value) q.set("end_date", $("#usage-end").value);
  return q.toString();
}

const QUOTA_UNITS = { storage_bytes: fmtBytes };
async function loadUsage() {
  const u = await api(`/v1/usage?${range()}`);
  const quotas = clear($("#quotas"));
  for (const [name, q] of Object.entries(u.quotas)) {
    const f = QUOTA_UNITS[name] || fmtNumber;
    const used = q.used === null ? null : q.used;
    quotas.append(el("div", { class: "quota", id: `quota-${name}` },
      el("div", { class: "label" }, el("span", { id: `quota-${name}-label` }, t(`quota.${name}`)),
        el("span", {}, used === null ? `${f(q.limit)} ${t("quota.limit")}` : `${f(used)} / ${f(q.limit)}`)),
      used === null ? "" : el("progress", { max: String(q.limit || 1), value: String(Math.min(used, q.limit)), "aria-labelledby": `quota-${name}-label` })));
  }
  // by day: one bar series per kind; by model: tokens per model (trained, predicted, embedded)
  const days = [...new Set(u.data.map((r) => r.date))].sort();
  const kinds = ["requests", "trained_tokens", "predicted_tokens", "embedded_tokens"];
  const p = palette();
  chart("usage-day-chart", {
    type: "bar",
    data: { labels: days, datasets: kinds.map((k, i) => ({ label: t(`kind.${k}`), backgroundColor: p[i], borderColor: p[i],
      data: days.map((d) => u.data.filter((r) => r.date === d && r.kind === k).reduce((n, r) => n + r.quantity, 0)),
      yAxisID: k === "requests" ? "y1" : "y" })) },
    options: { plugins: { legend: { position: "bottom" } }, scales: { y: { beginAtZero: true, title: { display: true, text: t("account.tokens") } },
      y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: t("kind.requests") } } } },
  });
  const models = [...new Set(u.data.filter((r) => r.model).map((r) => r.model))];
  const short = (m) => (m.length > 28 ? `…${m.slice(-26)}` : m);
  chart("usage-model-chart", {
    type: "bar",
    data: { labels: models.map(short), datasets: kinds.slice(1).map((k, i) => ({ label: t(`kind.${k}`), backgroundColor: p[i + 1], borderColor: p[i + 1],
      data: models.map((m) => u.data.filter((r) => r.model === m && r.kind === k).reduce((n, r) => n + r.quantity, 0)) })) },
    options: { indexAxis: "y", plugins: { legend: { position: "bottom" } }, scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true } } },
  });
  const tbody = clear($("#usage-table tbody"));
  for (const r of u.data) tbody.append(el("tr", {}, el("td", {}, r.date), el("td", {}, r.model || "—"), el("td", {}, t(`kind.${r.kind}`)), el("td", { class: "num" }, fmtNumber(r.quantity))));
}
$("#usage-form").addEventListener("submit", (e) => { e.preventDefault(); loadUsage().catch((err) => alert(errorText(err))); });
$("#usage-csv").addEventListener("click", async () => {
  const r = await api(`/v1/usage/export?${range()}`, { raw: true });
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: `usage-${me.tenant}.csv` });
  document.body.append(a); a.click(); a.remove(); setTimeout(() => URL.revokeObjectURL(url), 1000);
});

async function loadKeys() {
  const keys = (await api("/v1/api_keys")).data;
  const tbody = clear($("#keys-table tbody"));
  for (const k of keys) {
    const current = k.id === me.key_id;
    tbody.append(el("tr", { "data-key": k.id },
      el("td", {}, k.name || "—", current ? el("span", { class: "badge ok" }, t("account.this_key")) : ""),
      el("td", {}, el("code", {}, `${k.prefix}…`)), el("td", {}, k.scopes.join(", ")), el("td", {}, fmtTime(k.created_at)),
      el("td", {}, k.revoked_at ? el("span", { class: "badge bad" }, t("account.revoked")) : el("span", { class: "badge ok" }, t("account.active"))),
      el("td", {}, k.revoked_at || current ? "" : el("button", { type: "button", class: "danger", "aria-label": t("account.revoke_named", { name: k.name || k.prefix }),
        onclick: () => revoke(k) }, t("account.revoke")))));
  }
}
async function revoke(k) {
  if (!confirm(t("account.confirm_revoke", { name: k.name || k.prefix }))) return;
  try { await api(`/v1/api_keys/${encodeURIComponent(k.id)}`, { method: "DELETE" }); } catch (e) { alert(errorText(e)); }
  await loadKeys();
}
$("#key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const scopes = $$("input[name=scope]:checked").map((x) => x.value);
  try {
    const k = await api("/v1/api_keys", { method: "POST", body: { name: $("#key-name").value.trim(), scopes } });
    $("#new-key-secret").textContent = k.secret;
    show($("#new-key"));
    $("#key-name").value = "";
    await loadKeys();
  } catch (err) { alert(errorText(err)); }
});
for (const b of $$("button.copy")) b.addEventListener("click", () => copyText($(`#${b.dataset.copy}`).textContent, b));
if (!me.scopes.includes("admin")) {
  const err = $("#account-error");
  err.textContent = t("account.needs_admin");
  err.hidden = false;
  for (const s of $$("main section.card")) s.hidden = true;
} else {
  const today = new Date();
  const iso = (d) => d.toISOString().slice(0, 10);
  $("#usage-start").value = iso(new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), 1)));
  $("#usage-end").value = iso(today);
  await Promise.all([loadUsage(), loadKeys()]);
}
ready();
