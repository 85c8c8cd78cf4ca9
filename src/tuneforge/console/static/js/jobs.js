import { ready, $, api, clear, el, fmtTime, poll, requireKey, show, statusBadge, t } from "./app.js";

await requireKey();
const ACTIVE = ["validating_files", "queued", "running"];
let active = false;

async function load() {
  const jobs = (await api("/v1/fine_tuning/jobs?limit=100")).data;
  const tbody = clear($("#jobs-table tbody"));
  for (const j of jobs) {
    tbody.append(el("tr", {},
      el("td", {}, el("a", { href: `/console/jobs/${encodeURIComponent(j.id)}` }, j.id)),
      el("td", {}, statusBadge(j.status)),
      el("td", {}, t(`task.${j.task}`)),
      el("td", {}, j.model),
      el("td", {}, j.fine_tuned_model ? el("a", { href: `/console/models/${encodeURIComponent(j.fine_tuned_model)}` }, j.fine_tuned_model) : "—"),
      el("td", {}, fmtTime(j.created_at))));
  }
  show($("#jobs-empty"), jobs.length === 0);
  active = jobs.some((j) => ACTIVE.includes(j.status));
}
await load();
poll(load, 4000, () => active);
ready();
