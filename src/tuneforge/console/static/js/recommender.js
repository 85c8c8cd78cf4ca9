// The text recommender: list and register recommenders, recommend for a user, similar items, record interactions.
import { ready, $, api, clear, el, flash, fmtNumber, fmtTime, requireKey, show, showError, t } from "./app.js";

await requireKey();
const BASE = "/v1/solutions/recommender";
const error = $("#rec-error");

function current() { return $("#rec-select").value; }

async function loadRecommenders(select) {
  const recs = (await api(BASE)).data;
  const tbody = clear($("#recommenders-table tbody"));
  for (const r of recs) {
    const s = r.summary;
    const blend = t("rec.blend_value", { text: fmtNumber(s.blend.text, 2), knn: fmtNumber(s.blend.knn, 2),
      pop: fmtNumber(s.blend.popularity, 2) });
    tbody.append(el("tr", {}, el("td", {}, r.name, " ", el("code", {}, r.id)), el("td", {}, fmtNumber(s.items)),
      el("td", {}, fmtNumber(s.users)), el("td", {}, fmtNumber(s.cold_items ?? 0)), el("td", {}, blend),
      el("td", {}, fmtTime(r.created_at))));
  }
  show($("#recommenders-empty"), recs.length === 0);
  const sel = clear($("#rec-select"));
  for (const r of recs) sel.append(el("option", { value: r.id }, r.name));
  if (select) sel.value = select;
  for (const id of ["#rec-select", "#rec-button", "#sim-button", "#event-button"]) $(id).disabled = recs.length === 0;
}

function need(input, key) {
  const v = $(input).value.trim();
  if (!v) { showError(error, new Error(t(key))); $(input).focus(); }
  return v;
}

$("#rec-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(error, null);
  const user = need("#rec-user", "rec.need_user");
  if (!user || !current()) return;
  const k = Math.max(1, Math.min(100, Number($("#rec-k").value) || 10));
  try {
    const data = (await api(`${BASE}/${current()}/recommend?user=${encodeURIComponent(user)}&k=${k}`)).data;
    const list = clear($("#rec-results"));
    for (const r of data) {
      list.append(el("li", {}, el("strong", {}, r.title), " ", el("code", {}, r.item_id),
        el("span", { class: "meta" }, r.explanation)));
    }
    if (!data.length) list.append(el("li", {}, t("rec.nothing")));
  } catch (e) { showError(error, e); }
});

$("#sim-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(error, null);
  const item = need("#sim-item", "rec.need_item");
  if (!item || !current()) return;
  try {
    const data = (await api(`${BASE}/${current()}/similar?item=${encodeURIComponent(item)}&k=10`)).data;
    const list = clear($("#sim-results"));
    for (const s of data) {
      list.append(el("li", {}, el("strong", {}, s.title), " ", el("code", {}, s.item_id),
        el("span", { class: "meta" }, t("rec.sim_meta", { text: fmtNumber(s.text_similarity, 2),
          knn: fmtNumber(s.knn_similarity, 2) }))));
    }
  } catch (e) { showError(error, e); }
});

$("#event-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(error, null);
  const user = need("#event-user", "rec.need_user");
  if (!user) return;
  const item = need("#event-item", "rec.need_item");
  if (!item || !current()) return;
  const raw = $("#event-rating").value;
  try {
    await api(`${BASE}/${current()}/interactions`, { method: "POST", body: {
      events: [{ user, item, rating: raw === "" ? null : Number(raw) }] } });
    flash(t("rec.recorded", { user, item }));
    $("#event-item").value = "";
  } catch (e) { showError(error, e); }
});

$("#create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(error, null);
  const name = need("#new-name", "rec.need_name");
  if (!name) return;
  const bundle = need("#new-bundle", "rec.need_bundle");
  if (!bundle) return;
  $("#create-button").disabled = true;
  try {
    const r = await api(BASE, { method: "POST", body: { name, bundle } });
    flash(t("rec.registered", { name: r.name }));
    $("#create-form").reset();
    await loadRecommenders(r.id);
  } catch (e) { showError(error, e); } finally { $("#create-button").disabled = false; }
});

try {
  await loadRecommenders();
} catch (e) { showError(error, e); }
ready();
