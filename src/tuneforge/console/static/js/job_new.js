import { ready, $, api, clear, el, errorText, fmtNumber, requireKey, showError, t } from "./app.js";

await requireKey();
const q = new URLSearchParams(location.search);
const form = $("#job-form");
const [files, models] = await Promise.all([api("/v1/files?limit=500"), api("/v1/models")]);

function fillFiles(select, optional, chosen) {
  clear(select);
  if (optional) select.append(el("option", { value: "" }, t("new.no_validation")));
  for (const f of files.data) select.append(el("option", { value: f.id, selected: f.id === chosen }, `${f.filename} (${f.id})`));
}
fillFiles($("#training-file"), false, q.get("training_file"));
fillFiles($("#validation-file"), true, q.get("validation_file"));
if (!files.data.length) showError($("#job-error"), new Error(t("new.no_files")));

const baseSelect = $("#base-model");
// the base models (and your models to continue from) that fit the task: chat models generate, encoders the rest
const fits = (m, task) => (task === "generation") === (m.task === "generation") && (m.owned_by === "tuneforge" || m.task === task);
function fillModels(task, chosen) {
  clear(baseSelect);
  const group = el("optgroup", { label: t("models.base") });
  for (const m of models.data.filter((x) => x.owned_by === "tuneforge" && fits(x, task))) {
    const meta = [m.language, m.parameters].filter(Boolean).join(", ");
    group.append(el("option", { value: m.id }, meta ? `${m.id} — ${meta}` : m.id));
  }
  baseSelect.append(group);
  const own = models.data.filter((x) => x.owned_by !== "tuneforge" && fits(x, task));
  if (own.length) {
    const g2 = el("optgroup", { label: t("models.continue") });
    for (const m of own) g2.append(el("option", { value: m.id }, m.id));
    baseSelect.append(g2);
  }
  if (chosen && [...baseSelect.options].some((o) => o.value === chosen)) baseSelect.value = chosen;
  describeBase();
}
function describeBase() {
  const m = models.data.find((x) => x.id === baseSelect.value);
  $("#base-help").textContent = m ? (m.description || t("models.fine_tuned_base", { task: m.task ? t(`task.${m.task}`) : "" })) : "";
}
// the method the task trains with: full fine-tuning of an encoder, LoRA for a chat model (the API's defaults)
function describeMethod(task) {
  const lora = task === "generation";
  clear($("#method")).append(el("option", { value: lora ? "lora" : "full" }, t(lora ? "method.lora" : "method.full")));
  $("#method-help").textContent = t(lora ? "help.method_lora" : "help.method");
}
baseSelect.addEventListener("change", describeBase);
if (q.get("task")) $("#task").value = q.get("task");
function taskChanged(chosen) { fillModels($("#task").value, chosen); describeMethod($("#task").value); }
$("#task").addEventListener("change", () => taskChanged(baseSelect.value));
taskChanged(q.get("model"));

function num(name) { const v = form.elements[name].value.trim(); return v === "" ? null : Number(v); }

function body() {
  const hp = { n_epochs: num("n_epochs") ?? "auto", batch_size: num("batch_size") ?? "auto",
               learning_rate_multiplier: num("learning_rate_multiplier") ?? "auto" };
  const b = {
    model: baseSelect.value, training_file: form.elements.training_file.value,
    validation_file: form.elements.validation_file.value || null,
    metadata: { task: form.elements.task.value },
    method: { type: "supervised", supervised: { hyperparameters: hp } },
  };
  const suffix = form.elements.suffix.value.trim();
  if (suffix) b.suffix = suffix;
  if (num("seed") !== null) b.seed = num("seed");
  if (num("max_length") !== null) b.max_length = num("max_length");
  if (num("logging_steps") !== null) b.logging_steps = num("logging_steps");
  return b;
}

let seq = 0;
async function estimate() {
  const box = $("#estimate");
  if (!form.elements.training_file.value) return;
  const mine = ++seq;
  clear(box).append(el("p", { class: "muted" }, t("new.estimating")));
  try {
    const e = await api("/v1/fine_tuning/estimates", { method: "POST", body: body() });
    if (mine !== seq) return;
    clear(box).append(
      el("dl", { class: "estimate" },
        el("dt", {}, t("new.examples")), el("dd", {}, fmtNumber(e.examples)),
        el("dt", {}, t("new.tokens_per_epoch")), el("dd", {}, fmtNumber(e.tokens_per_epoch)),
        el("dt", {}, t("field.epochs")), el("dd", {}, fmtNumber(e.epochs)),
        el("dt", {}, t("new.tokens_total")), el("dd", { id: "estimate-tokens", class: "big" }, fmtNumber(e.trained_tokens)),
        el("dt", {}, t("new.quota_left")), el("dd", {}, `${fmtNumber(e.quota.remaining)} / ${fmtNumber(e.quota.limit)}`)),
      el("p", { class: e.within_quota ? "ok-note" : "error" }, t(e.within_quota ? "new.within_quota" : "new.over_quota")));
  } catch (err) {
    if (mine !== seq) return;
    clear(box).append(el("p", { class: "error" }, errorText(err)));
  }
}
let timer = null;
form.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(estimate, 300); });
$("#estimate-button").addEventListener("click", estimate);

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("#job-error");
  showError(err, null);
  const start = $("#start-job");
  start.disabled = true;
  try {
    const job = await api("/v1/fine_tuning/jobs", { method: "POST", body: body() });
    location.href = `/console/jobs/${encodeURIComponent(job.id)}`;
  } catch (e) {
    showError(err, e);
    err.focus?.();
  } finally {
    start.disabled = false;
  }
});
estimate();
ready();
