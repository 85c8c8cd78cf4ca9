import { ready, $, api, chart, clear, el, errorText, fmtNumber, palette, params, requireKey, show, stat, t } from "./app.js";
import { bubbles } from "./conversation.js";

await requireKey();
const fileId = params.file_id;
const taskSelect = $("#task-select");
let current = null;

function cell(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function render(p) {
  current = p;
  $("#file-name").textContent = p.file.filename;
  document.title = `${p.file.filename} · TuneForge`;
  if (!taskSelect.value) taskSelect.dataset.guess = p.task;
  $("#train-link").href = `/console/jobs/new?training_file=${encodeURIComponent(p.file.id)}&task=${p.task}`;
  const stats = clear($("#stats"));
  stats.append(stat(t("field.task"), t(`task.${p.task}`)), stat(t("dataset.format"), p.format),
    stat(t("dataset.records"), fmtNumber(p.records)), stat(t("dataset.examples"), fmtNumber(p.examples)),
    stat(t("dataset.problems"), fmtNumber(p.problems.length), "problem-count"));

  const v = clear($("#validation"));
  if (p.valid) {
    v.append(el("p", { class: "ok-note", id: "valid-note" }, t("dataset.valid", { n: fmtNumber(p.examples), task: t(`task.${p.task}`) })));
  } else {
    v.append(el("p", { class: "error", id: "invalid-note" }, t("dataset.invalid", { n: p.problems.length })));
  }
  const issues = [...p.problems.map((x) => ["bad", x]), ...p.warnings.map((x) => ["warn", x])];
  if (issues.length) {
    v.append(el("div", { class: "table-wrap" }, el("table", { id: "problems-table" },
      el("thead", {}, el("tr", {}, ...["col.line", "col.field", "col.problem", "col.hint"].map((k) => el("th", { scope: "col" }, t(k))))),
      el("tbody", {}, issues.map(([kind, x]) => el("tr", { class: kind },
        el("td", { class: "num" }, x.line ?? "—"), el("td", {}, x.field ? el("code", {}, x.field) : "—"),
        el("td", {}, kind === "warn" ? el("span", { class: "badge warn" }, t("dataset.warning")) : "", " ", x.message),
        el("td", { class: "muted" }, x.hint || "")))))));
  }

  const labels = Object.entries(p.labels);
  show($("#labels-empty"), labels.length === 0);
  show($("#labels-box"), labels.length > 0);
  const lt = clear($("#labels-table tbody"));
  const total = labels.reduce((n, [, c]) => n + c, 0) || 1;
  for (const [name, n] of labels) lt.append(el("tr", {}, el("td", {}, name), el("td", { class: "num" }, fmtNumber(n)), el("td", { class: "num" }, (100 * n / total).toFixed(1))));
  chart("labels-chart", {
    type: "bar",
    data: { labels: labels.map(([k]) => k), datasets: [{ label: t(p.task === "ner" ? "dataset.entities" : "dataset.examples"), data: labels.map(([, n]) => n), backgroundColor: palette()[0] }] },
    options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
  });

  // a chat file (generation) has no labels and no cleaner; its records are previewed as conversations, the raw
  // rows folded away under them
  const chat = p.task === "generation";
  show($("#labels-card"), !chat);
  $("#report-grid").classList.toggle("two", !chat);
  show($("#clean-card"), !chat);
  $("#tools-grid").classList.toggle("two", !chat);
  show($("#conversations-box"), chat);
  show($("#raw-rows"), chat);
  if (chat) $("#raw-rows").append($("#preview-wrap"));
  else $("#raw-rows").after($("#preview-wrap"));

  const head = clear($("#preview-table thead")), body = clear($("#preview-table tbody"));
  const cols = ["line", ...p.columns];
  head.append(el("tr", {}, cols.map((c) => el("th", { scope: "col" }, c === "line" ? t("col.line") : c))));
  for (const row of p.rows) body.append(el("tr", {}, cols.map((c) => el("td", { class: c === "line" ? "num" : "" }, cell(row[c])))));
}

function side(kind, messages) {
  return el("div", { class: `side ${kind}` }, el("h4", {}, t(`conv.${kind}`)), bubbles(messages, t(`conv.${kind}`)));
}

/** Each record as training reads it: a conversation's bubbles (weight-0 turns marked), a preference pair's prompt
 * then its chosen and rejected answers side by side, or the record's problems. */
function renderConversations(r) {
  const box = clear($("#conversations"));
  if (!r.data.length) box.append(el("p", { class: "empty" }, t("conv.empty")));
  for (const c of r.data) {
    const id = `conv-${c.line}`;
    const kind = c.problems.length ? "bad" : c.messages ? "sft" : "pair";
    const art = el("article", { class: `conversation ${kind}`, "aria-labelledby": `${id}-h`, "data-line": c.line,
      "data-kind": kind }, el("h3", { id: `${id}-h` }, t("conv.line", { line: c.line ?? "—" }), " ",
      c.format ? el("code", { class: "format" }, c.format) : ""));
    if (kind === "bad") {
      art.append(el("p", { class: "error" }, t("conv.problems")), el("ul", { class: "problems" },
        c.problems.map((x) => el("li", {}, x.field ? el("code", {}, x.field) : "", " ", x.message))));
    } else if (kind === "sft") {
      art.append(bubbles(c.messages, t("conv.line", { line: c.line })));
    } else {
      art.append(bubbles(c.prompt, t("conv.prompt")), el("div", { class: "pair" },
        side("chosen", c.chosen), side("rejected", c.rejected)));
    }
    box.append(art);
  }
}

async function load() {
  const q = taskSelect.value ? `&task=${taskSelect.value}` : "";
  try {
    const p = await api(`/v1/files/${encodeURIComponent(fileId)}/preview?limit=20${q}`);
    render(p);
    if (p.task === "generation") renderConversations(await api(`/v1/files/${encodeURIComponent(fileId)}/conversations?limit=20`));
  } catch (e) { clear($("#validation")).append(el("p", { class: "error", role: "alert" }, errorText(e))); }
}
taskSelect.addEventListener("change", load);

function fileLink(f) { return el("a", { href: `/console/datasets/${encodeURIComponent(f.id)}` }, f.filename); }

$("#clean-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const box = clear($("#clean-result"));
  const f = ev.target;
  const body = { task: current.task };
  for (const k of ["dedupe", "near_dedupe", "drop_conflicts", "strip_html", "lowercase"]) body[k] = f.elements[k].checked;
  $("#clean-button").disabled = true;
  try {
    const r = await api(`/v1/files/${encodeURIComponent(fileId)}/clean`, { method: "POST", body });
    box.append(el("p", {}, t("dataset.cleaned", { kept: r.kept, removed: r.removed.length, changed: r.changed }), " ", fileLink(r.file)));
    if (r.removed.length) {
      box.append(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, t("col.line")), el("th", { scope: "col" }, t("col.reason")), el("th", { scope: "col" }, t("col.detail")))),
        el("tbody", {}, r.removed.slice(0, 100).map((x) => el("tr", {}, el("td", { class: "num" }, x.line ?? "—"),
          el("td", {}, t(`reason.${x.reason}`)), el("td", {}, x.detail)))))));
    }
  } catch (e) { box.append(el("p", { class: "error", role: "alert" }, errorText(e))); }
  finally { $("#clean-button").disabled = false; }
});

$("#split-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const box = clear($("#split-result"));
  const f = ev.target;
  const body = { task: current.task, dev: Number(f.elements.dev.value) / 100, test: Number(f.elements.test.value) / 100,
                 seed: Number(f.elements.seed.value || 0) };
  $("#split-button").disabled = true;
  try {
    const r = await api(`/v1/files/${encodeURIComponent(fileId)}/split`, { method: "POST", body });
    box.append(el("ul", {}, Object.entries(r.files).map(([part, file]) => el("li", {}, el("strong", {}, t(`part.${part}`)), ": ", fileLink(file)))));
    if (r.files.train && r.files.dev) {
      box.append(el("a", { class: "button primary", href: `/console/jobs/new?training_file=${r.files.train.id}&validation_file=${r.files.dev.id}&task=${current.task}` }, t("dataset.train_split")));
    }
  } catch (e) { box.append(el("p", { class: "error", role: "alert" }, errorText(e))); }
  finally { $("#split-button").disabled = false; }
});

await load();
show($("#stats"), true);
ready();
