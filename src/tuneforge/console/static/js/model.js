import { ready, $, $$, api, clear, copyText, el, errorText, fmtNumber, metricName, params, requireKey, stat, t } from "./app.js";
import { setupChat } from "./chat.js";

await requireKey();
const modelId = params.model_id;
const model = await api(`/v1/models/${encodeURIComponent(modelId)}`);
const base = model.owned_by === "tuneforge"; // a base model: no training, no evaluation
const ev = base ? null : await api(`/v1/models/${encodeURIComponent(modelId)}/evaluation`).catch(() => null);
const task = model.task;
// generative models (base chat models and fine-tuned generation models) chat; the encoders predict
const generative = task === "generation";

// ---- summary and evaluation ----
const stats = clear($("#model-stats"));
stats.append(stat(t("field.task"), task ? t(`task.${task}`) : "—"));
if (base) {
  for (const [k, v] of [["col.language", model.language], ["col.size", model.parameters], ["col.description", model.description]]) {
    if (v) stats.append(stat(t(k), v));
  }
} else {
  stats.append(stat(t("field.base_model"), model.base_model || "—"));
}
if (model.fine_tuning_job) {
  stats.append(el("div", { class: "stat" }, el("span", { class: "k" }, t("col.job")),
    el("a", { class: "v", href: `/console/jobs/${encodeURIComponent(model.fine_tuning_job)}` }, model.fine_tuning_job)));
}
if (ev) {
  const loss = stat(t("model.mean_train_loss"), fmtNumber(ev.training.final_loss, 4), "mean-train-loss");
  loss.title = t("model.mean_train_loss_help");
  stats.append(stat(t("model.steps"), fmtNumber(ev.training.steps)), loss);
  if (ev.labels.length) stats.append(stat(t("model.labels"), String(ev.labels.length)));
}
$("#eval-card").hidden = base;

const e = ev && ev.evaluation;
if (!e) {
  $("#eval-empty").hidden = false;
  $("#per-class-table").closest(".grid").hidden = true;
} else {
  const box = clear($("#eval-metrics"));
  for (const [k, v] of Object.entries(e.metrics)) {
    if (typeof v !== "number" || k === "n" || k.endsWith("support")) continue;
    const pct = task === "qa" ? v.toFixed(1) : fmtNumber(v, 4);
    box.append(stat(metricName(k), pct, `metric-${k}`));
  }
  if (task === "ner") $("#per-class-name").textContent = t("col.entity_type");
  const pc = e.per_class ? Object.entries(e.per_class) : [];
  const tbody = clear($("#per-class-table tbody"));
  for (const [name, m] of pc) {
    tbody.append(el("tr", {}, el("th", { scope: "row" }, name), el("td", { class: "num" }, fmtNumber(m.precision, 3)),
      el("td", { class: "num" }, fmtNumber(m.recall, 3)), el("td", { class: "num" }, fmtNumber(m.f1, 3)), el("td", { class: "num" }, m.support)));
  }
  if (!pc.length) $("#per-class-table").closest(".table-wrap").parentElement.hidden = true; // with its heading
  const cm = e.confusion_matrix;
  if (cm && cm.labels && cm.labels.length) {
    const max = Math.max(1, ...cm.matrix.flat());
    const table = clear($("#confusion-table"));
    table.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("model.gold_pred")),
      cm.labels.map((l) => el("th", { scope: "col" }, l)))));
    table.append(el("tbody", {}, cm.matrix.map((row, i) => el("tr", {}, el("th", { scope: "row" }, cm.labels[i]),
      row.map((n, j) => {
        const a = n / max;
        // the accent colour at a strength by count, kept light enough that the theme's text colour stays readable
        return el("td", { class: "num", style: { background: `rgba(29, 78, 216, ${(0.06 + 0.49 * a).toFixed(3)})`,
          color: "var(--text)", fontWeight: i === j ? "700" : "400" },
          title: `${cm.labels[i]} → ${cm.labels[j]}: ${n}` }, n);
      })))));
  } else {
    $("#confusion-box").hidden = true;
  }
  if (!pc.length && $("#confusion-box").hidden) $("#per-class-table").closest(".grid").hidden = true;
  renderSlices(e.slices);
  renderRobustness(e.robustness);
}

// ---- fairness slices and robustness (tuneforge evaluate --slice-by / --robustness) ----
function renderSlices(sl) {
  if (!sl || !sl.slices || !Object.keys(sl.slices).length) return;
  $("#slices-box").hidden = false;
  const summary = sl.summary || {};
  const first = Object.values(summary)[0] || {};
  $("#slices-help").textContent = t("model.slices_help", { report: sl.report, metric: metricName(first.metric || ""),
    gap: fmtNumber(first.min_gap, 4) });
  const box = clear($("#slices-tables"));
  for (const [slicer, table] of Object.entries(sl.slices)) {
    const s = summary[slicer] || {};
    const metric = s.metric;
    const id = `slice-${slicer.replace(/[^\w-]/g, "_")}`;
    const rows = Object.entries(table).map(([value, m]) => el("tr", { class: m.flagged ? "flagged" : "" },
      el("th", { scope: "row" }, value), el("td", { class: "num" }, m.n),
      el("td", { class: "num" }, fmtNumber(m[metric], 4)),
      el("td", { class: "num" }, m.gap == null ? "—" : `${m.gap >= 0 ? "+" : ""}${fmtNumber(m.gap, 4)}`),
      el("td", {}, m.flagged ? el("span", { class: "tag", title: t("model.slice_flagged") }, "⚠ " + t("model.slice_flagged")) : "")));
    box.append(el("h4", { id: `${id}-h` }, slicer));
    const notes = [t("model.slice_overall", { value: fmtNumber(s.overall, 4), diff: fmtNumber(s.difference, 4) })];
    if (s.demographic_parity_difference != null || s.equalized_odds_difference != null) {
      notes.push(t("model.slice_fairness", { label: s.positive_label, dp: fmtNumber(s.demographic_parity_difference, 4),
        eo: fmtNumber(s.equalized_odds_difference, 4) }));
    }
    box.append(el("p", { class: "muted" }, notes.join(" ")));
    box.append(el("div", { class: "table-wrap" }, el("table", { id, "aria-labelledby": `${id}-h` },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("model.slice")), el("th", { scope: "col" }, "n"),
        el("th", { scope: "col" }, metricName(metric || "")), el("th", { scope: "col" }, t("model.gap")),
        el("th", { scope: "col" }, t("model.slice_flag")))),
      el("tbody", {}, rows))));
  }
}

function renderRobustness(rb) {
  if (!rb || !rb.perturbations) return;
  $("#robust-box").hidden = false;
  $("#robust-help").textContent = t("model.robustness_help", { report: rb.report, metric: metricName(rb.metric || ""),
    seed: rb.seed });
  const tbody = clear($("#robust-table tbody"));
  for (const [name, r] of Object.entries(rb.perturbations)) {
    const label = t(`perturb.${name}`);
    if (r.skipped) {
      tbody.append(el("tr", {}, el("th", { scope: "row" }, label), el("td", { colspan: "4", class: "muted", title: r.skipped }, t("model.skipped"))));
      continue;
    }
    tbody.append(el("tr", {}, el("th", { scope: "row" }, label), el("td", { class: "num" }, `${r.changed} / ${r.n}`),
      el("td", { class: "num" }, fmtNumber(r.original, 4)), el("td", { class: "num" }, fmtNumber(r.perturbed, 4)),
      el("td", { class: "num" }, r.drop == null ? "—" : `${r.drop >= 0 ? "+" : ""}${fmtNumber(r.drop, 4)}`)));
  }
}

// ---- playground ----
if (generative) {
  $("#play-card").hidden = true;
  $("#play-grid").classList.remove("two");
  setupChat(modelId);
}
const examples = { classification: t("play.example_cls"), ner: t("play.example_ner"), qa: t("play.example_context") };
$("#play-text").value = examples[task] || "";
if (task === "qa") {
  $("#q-field").hidden = false;
  $("#play-text-label").textContent = t("play.context");
  $("#play-question").value = t("play.example_question");
}

function highlight(text, spans) {
  // spans: [{start, end, label}], non-overlapping; text between is kept as text nodes (never parsed as HTML)
  const out = el("p", { class: "highlighted" });
  let at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    if (s.start < at) continue;
    out.append(text.slice(at, s.start));
    out.append(el("mark", { title: s.title || "" }, text.slice(s.start, s.end), s.label ? el("span", { class: "tag" }, s.label) : ""));
    at = s.end;
  }
  out.append(text.slice(at));
  return out;
}

function renderPrediction(p, input) {
  const box = clear($("#play-result"));
  if (task === "classification") {
    const scores = Object.entries(p.scores || {}).sort((a, b) => b[1] - a[1]);
    const top = p.label ?? (p.labels || []).join(", ");
    box.append(el("p", {}, t("play.predicted"), " ", el("strong", { id: "predicted-label", class: "top-label" }, top)));
    if (p.rejected) {  // the run's reject option: out of scope, the nearest known label kept
      box.append(el("p", { id: "rejected-note", class: "muted" },
        t("play.rejected", { label: p.best_label, score: (p.score ?? 0).toFixed(3) })));
    }
    box.append(el("ul", { class: "scores", "aria-label": t("play.scores") }, scores.map(([label, s]) => el("li", {},
      el("span", {}, label), el("span", { class: "bar", role: "presentation" }, el("span", { style: { width: `${(100 * s).toFixed(1)}%` } })),
      el("span", { class: "num" }, s.toFixed(3))))));
  } else if (task === "ner") {
    const ents = p.entities || [];
    box.append(highlight(input, ents.map((x) => ({ start: x.start, end: x.end, label: x.type, title: `${x.type} ${x.score.toFixed(2)}` }))));
    box.append(el("p", { class: "muted", id: "entity-count" }, t("play.entities", { n: ents.length })));
    if (ents.length) {
      box.append(el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("col.entity_type")),
        el("th", { scope: "col" }, t("play.text")), el("th", { scope: "col" }, t("play.score")))),
        el("tbody", {}, ents.map((x) => el("tr", {}, el("td", {}, x.type), el("td", {}, x.text), el("td", { class: "num" }, x.score.toFixed(3))))))));
    }
  } else {
    box.append(el("p", {}, t("play.answer"), " ", el("strong", { id: "qa-answer" }, p.answer || t("play.no_answer")), ` (${(p.score ?? 0).toFixed(3)})`));
    if (p.answer) box.append(highlight(input.context, [{ start: p.start, end: p.end }]));
  }
}

// ---- explanations: each word shaded by its attribution (green for the label, red against it) ----
const explainable = task === "classification" || task === "ner";
$("#explain-field").hidden = !explainable;
const SHADE = { for: [22, 163, 74], against: [220, 38, 38] };

function shaded(text, attributions) {
  // attributions: [{token, score, start, end}] in the text's order; the text between them kept as text nodes
  const scale = Math.max(1e-12, ...attributions.map((a) => Math.abs(a.score)));
  const out = el("p", { class: "highlighted explained" });
  let at = 0;
  for (const a of attributions.filter((x) => !x.segment && x.start >= at)) {
    out.append(text.slice(at, a.start));
    const [r, g, b] = a.score >= 0 ? SHADE.for : SHADE.against;
    const alpha = (0.08 + 0.62 * Math.abs(a.score) / scale).toFixed(3);
    out.append(el("span", { class: "attr", title: `${a.token} ${a.score >= 0 ? "+" : ""}${a.score.toFixed(4)}`,
      "data-score": String(a.score), style: { background: `rgba(${r}, ${g}, ${b}, ${alpha})`, color: "var(--text)",
        borderRadius: "3px", padding: "0 2px" } }, text.slice(a.start, a.end)));
    at = a.end;
  }
  out.append(text.slice(at));
  return out;
}

function renderExplanation(explanation, text) {
  const box = el("div", { id: "explanation" });
  const swatch = (rgb, label) => el("span", { class: "legend-item" }, el("span", { role: "presentation", style: {
    display: "inline-block", width: "1em", height: "1em", verticalAlign: "middle", marginRight: ".3em",
    borderRadius: "3px", background: `rgba(${rgb.join(", ")}, 0.7)` } }), label);
  const list = Array.isArray(explanation) ? explanation : [explanation];
  if (!list.length) box.append(el("p", { class: "muted" }, t("play.explain_none")));
  for (const e of list) {
    const head = Array.isArray(explanation) ? t("play.explanation_entity", { type: e.label, text: e.text })
      : t("play.explanation", { label: e.label });
    box.append(el("h3", {}, head), shaded(text, e.attributions),
      el("p", { class: "muted" }, t("play.explain_delta", { delta: e.convergence_delta.toFixed(4) })));
  }
  box.append(el("p", { class: "legend" }, swatch(SHADE.for, t("play.explain_for")), " ",
    swatch(SHADE.against, t("play.explain_against"))));
  $("#play-result").append(box);
}

$("#play-form").addEventListener("submit", async (evt) => {
  evt.preventDefault();
  const text = $("#play-text").value;
  const input = task === "qa" ? { question: $("#play-question").value, context: text } : text;
  const explain = explainable && $("#play-explain").checked;
  $("#play-button").disabled = true;
  try {
    const r = await api("/v1/predict", { method: "POST", body: { model: modelId, inputs: [input], ...(explain ? { explain: true } : {}) } });
    renderPrediction(r.data[0], input);
    if (r.data[0].explanation) renderExplanation(r.data[0].explanation, input);
  } catch (err) {
    clear($("#play-result")).append(el("p", { class: "error", role: "alert" }, errorText(err)));
  } finally { $("#play-button").disabled = false; }
});

// ---- snippets ----
const origin = location.origin;
const sample = task === "qa" ? { question: t("play.example_question"), context: examples.qa } : examples[task];
const body = JSON.stringify({ model: modelId, inputs: [sample] });
if (generative) chatSnippets(); else predictSnippets();

function chatSnippets() {
  const messages = [{ role: "user", content: t("chat.example") }];
  const request = JSON.stringify({ model: modelId, messages, max_tokens: 128 });
  $("#curl-snippet").textContent = `curl -s ${origin}/v1/chat/completions \\
  -H "Authorization: Bearer $TUNEFORGE_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '${request.replace(/'/g, "'\\''")}'`;
  $("#python-snippet").textContent = `import os
from openai import OpenAI

client = OpenAI(base_url="${origin}/v1", api_key=os.environ["TUNEFORGE_API_KEY"])
stream = client.chat.completions.create(
    model=${JSON.stringify(modelId)},
    messages=${JSON.stringify(messages)},
    max_tokens=128,
    stream=True,
)
for chunk in stream:
    print(chunk.choices[0].delta.content or "", end="", flush=True)`;
}

function predictSnippets() {
  $("#curl-snippet").textContent = `curl -s ${origin}/v1/predict \\
  -H "Authorization: Bearer $TUNEFORGE_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '${body.replace(/'/g, "'\\''")}'`;
  $("#python-snippet").textContent = `import os
import httpx

r = httpx.post(
    "${origin}/v1/predict",
    headers={"Authorization": f"Bearer {os.environ['TUNEFORGE_API_KEY']}"},
    json=${JSON.stringify({ model: modelId, inputs: [sample] }, null, 4).replace(/\n/g, "\n    ")},
    timeout=30,
)
r.raise_for_status()
print(r.json()["data"][0])`;
}
// ---- model card (GET /v1/models/{id}/card): the markdown as text, never parsed as HTML ----
const cardText = await api(`/v1/models/${encodeURIComponent(modelId)}/card`, { raw: true })
  .then((r) => r.text()).catch(() => null);
if (cardText) $("#model-card-text").textContent = cardText;
else { $("#model-card-empty").hidden = false; $("#model-card-text").closest(".code").hidden = true; }

for (const b of $$("button.copy")) b.addEventListener("click", () => copyText($(`#${b.dataset.copy}`).textContent, b));
ready();
