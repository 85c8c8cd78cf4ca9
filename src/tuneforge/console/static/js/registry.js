// The model registry: names, their versions and aliases; move an alias, roll back, delete, register a model.
import { ready, $, api, clear, el, flash, fmtNumber, fmtTime, metricName, requireKey, show, showError, t } from "./app.js";

await requireKey();
const BASE = "/v1/registry";
const error = $("#reg-error");
let current = new URLSearchParams(location.search).get("name");

const enc = encodeURIComponent;

function metricsText(metrics) {
  const parts = [];
  for (const [section, values] of Object.entries(metrics || {})) {
    if (values && typeof values === "object") {
      for (const [k, v] of Object.entries(values)) {
        if (typeof v === "number" && parts.length < 3) parts.push(`${metricName(k)} ${fmtNumber(v, 4)}`);
      }
    } else if (typeof values === "number" && parts.length < 3) parts.push(`${metricName(section)} ${fmtNumber(values, 4)}`);
  }
  return parts.join(" · ");
}

function aliasBadges(aliases) {
  return el("span", {}, ...aliases.map((a) => el("code", { class: "badge" }, a)));
}

async function loadNames() {
  const names = (await api(BASE)).data;
  const tbody = clear($("#names-table tbody"));
  for (const n of names) {
    const link = el("a", { href: `/console/registry?name=${enc(n.id)}` }, n.id);
    const aliases = Object.entries(n.aliases).map(([a, v]) => `${a} → ${v}`).join(", ");
    tbody.append(el("tr", {}, el("td", {}, link), el("td", {}, fmtNumber(n.versions)), el("td", {}, aliases),
      el("td", {}, n.latest === null ? "" : String(n.latest))));
  }
  show($("#names-empty"), names.length === 0);
  if (!current && names.length) current = names[0].id;
}

async function loadName() {
  show($("#versions-card"), Boolean(current));
  show($("#history-card"), Boolean(current));
  if (!current) return;
  $("#versions-h").textContent = t("reg.versions_of", { name: current });
  const versions = (await api(`${BASE}/${enc(current)}/versions`)).data;
  const tbody = clear($("#versions-table tbody"));
  const select = clear($("#alias-version"));
  for (const v of [...versions].reverse()) {
    const promote = el("button", { type: "button", class: "ghost" }, t("reg.promote"));
    promote.addEventListener("click", () => moveAlias("production", v.version, ""));
    const remove = el("button", { type: "button", class: "ghost danger" }, t("action.delete"));
    remove.disabled = v.aliases.length > 0;
    remove.addEventListener("click", () => deleteVersion(v.version));
    tbody.append(el("tr", {}, el("th", { scope: "row" }, String(v.version)), el("td", {}, aliasBadges(v.aliases)),
      el("td", {}, fmtTime(v.created_at)), el("td", {}, v.created_by),
      el("td", {}, v.parent === null ? "" : String(v.parent)), el("td", {}, metricsText(v.metrics)),
      el("td", {}, el("code", {}, v.source)), el("td", {}, promote, " ", remove)));
    select.append(el("option", { value: String(v.version) }, `${v.version}${v.aliases.length ? ` (${v.aliases.join(", ")})` : ""}`));
  }
  const events = (await api(`${BASE}/${enc(current)}/history`)).data;
  const hbody = clear($("#history-table tbody"));
  for (const e of [...events].reverse()) {
    hbody.append(el("tr", {}, el("td", {}, fmtTime(Date.parse(e.at) / 1000)), el("td", {}, e.actor),
      el("td", {}, t(`reg.act.${e.action}`)), el("td", {}, e.alias || ""),
      el("td", {}, e.version === null ? "" : String(e.version)),
      el("td", {}, e.previous === null ? "" : String(e.previous)), el("td", {}, e.reason)));
  }
}

async function refresh() { await loadNames(); await loadName(); }

async function moveAlias(alias, version, reason) {
  showError(error, null);
  try {
    await api(`${BASE}/${enc(current)}/aliases/${enc(alias)}`, { method: "PUT", body: { version, reason } });
    flash(t("reg.moved", { alias, version }));
    await refresh();
  } catch (e) { showError(error, e); }
}

async function deleteVersion(version) {
  if (!confirm(t("reg.confirm_delete", { version }))) return;
  showError(error, null);
  try {
    await api(`${BASE}/${enc(current)}/versions/${version}`, { method: "DELETE" });
    flash(t("reg.deleted", { version }));
    await refresh();
  } catch (e) { showError(error, e); }
}

function need(input, key) {
  const v = $(input).value.trim();
  if (!v) { showError(error, new Error(t(key))); $(input).focus(); }
  return v;
}

$("#alias-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const alias = need("#alias-name", "reg.need_alias");
  if (!alias) return;
  await moveAlias(alias, Number($("#alias-version").value), $("#alias-reason").value);
});

$("#rollback-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(error, null);
  const alias = need("#rollback-alias", "reg.need_alias");
  if (!alias) return;
  try {
    const v = await api(`${BASE}/${enc(current)}/rollback`, { method: "POST", body: {
      alias, reason: $("#rollback-reason").value } });
    flash(t("reg.rolled_back", { alias, version: v.version }));
    await refresh();
  } catch (e) { showError(error, e); }
});

$("#register-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(error, null);
  const name = need("#register-name", "reg.need_name");
  if (!name) return;
  const alias = $("#register-alias").value.trim();
  $("#register-button").disabled = true;
  try {
    const v = await api(`${BASE}/${enc(name)}/versions`, { method: "POST", body: {
      model: $("#register-model").value, alias: alias || null, reason: $("#register-reason").value } });
    flash(t("reg.registered", { id: v.id }));
    current = name;
    history.replaceState(null, "", `/console/registry?name=${enc(name)}`);
    await refresh();
  } catch (e) { showError(error, e); } finally { $("#register-button").disabled = false; }
});

async function loadModels() {
  const own = (await api("/v1/models")).data.filter((m) => m.owned_by !== "tuneforge");
  const sel = clear($("#register-model"));
  for (const m of own) sel.append(el("option", { value: m.id }, m.id));
  show($("#register-none"), own.length === 0);
  $("#register-button").disabled = own.length === 0;
}

try {
  await Promise.all([refresh(), loadModels()]);
} catch (e) { showError(error, e); }
ready();
