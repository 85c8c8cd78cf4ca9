import { ready, $, api, clear, el, fmtTime, requireKey, show, t } from "./app.js";

await requireKey();
const models = (await api("/v1/models")).data;
const own = models.filter((m) => m.owned_by !== "tuneforge");
const tbody = clear($("#models-table tbody"));
for (const m of own) {
  tbody.append(el("tr", {}, el("td", {}, el("a", { href: `/console/models/${encodeURIComponent(m.id)}` }, m.id)),
    el("td", {}, m.task ? t(`task.${m.task}`) : "—"), el("td", {}, m.base_model || "—"), el("td", {}, fmtTime(m.created))));
}
show($("#models-empty"), own.length === 0);
const base = clear($("#base-table tbody"));
for (const m of models.filter((x) => x.owned_by === "tuneforge")) {
  // a base chat model has a page with its playground; an encoder is only a starting point for fine-tuning
  const name = m.task ? el("a", { href: `/console/models/${encodeURIComponent(m.id)}` }, el("code", {}, m.id)) : el("code", {}, m.id);
  base.append(el("tr", {}, el("td", {}, name), el("td", {}, m.language || "—"), el("td", {}, m.parameters || "—"),
    el("td", {}, m.description || "")));
}
ready();
