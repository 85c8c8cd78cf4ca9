import { ready, $, api, chart, clear, el, errorText, fmtClock, fmtNumber, fmtTime, metricName, palette, params, poll, requireKey, serverError, serverText, showError, stat, statusBadge, t } from "./app.js";

await requireKey();
const jobId = params.job_id;
const FINAL = ["succeeded", "failed", "cancelled"];
let job = null;
let nEvents = -1;

function renderJob(j) {
  job = j;
  const badge = clear($("#job-status"));
  badge.className = `badge ${j.status}`;
  badge.textContent = t(`status.${j.status}`);
  badge.dataset.status = j.status;
  const running = ["running", "queued", "validating_files"].includes(j.status);
  $("#pause-button").hidden = !running;
  $("#resume-button").hidden = j.status !== "paused";
  $("#cancel-button").hidden = FINAL.includes(j.status);
  const hp = j.hyperparameters;
  const stats = clear($("#job-stats"));
  stats.append(stat(t("field.task"), t(`task.${j.task}`)), stat(t("field.base_model"), j.model),
    stat(t("field.epochs"), String(hp.n_epochs)), stat(t("field.batch_size"), String(hp.batch_size)),
    stat(t("field.lr_multiplier"), String(hp.learning_rate_multiplier)),
    stat(t("job.trained_tokens"), fmtNumber(j.trained_tokens)), stat(t("col.created"), fmtTime(j.created_at)));
  if (j.attempt > 0) stats.append(stat(t("job.attempt"), String(j.attempt), "job-attempt"));
  if (j.fine_tuned_model) {
    stats.append(el("div", { class: "stat", id: "fine-tuned-model" }, el("span", { class: "k" }, t("col.model")),
      el("a", { class: "v", href: `/console/models/${encodeURIComponent(j.fine_tuned_model)}` }, j.fine_tuned_model)));
  }
  $("#dev-card").hidden = perToken();
  $("#accuracy-card").hidden = !perToken();
  const err = $("#job-error");
  if (j.error) { err.textContent = serverError(j.error, { code: true }); err.hidden = false; } else err.hidden = true;
}

// the latest "Step n/total" of the training: from the metrics events (newest first), or null before the first step
function latestStep(events) {
  for (const e of events) {
    if (e.type !== "metrics" || !e.data || typeof e.data.step !== "number") continue;
    let total = typeof e.data.total_steps === "number" ? e.data.total_steps : null;
    if (total === null) { const m = /Step \d+\/(\d+)/.exec(e.message || ""); if (m) total = Number(m[1]); }
    if (total) return { step: e.data.step, total };
  }
  return null;
}

function renderProgress(j, events) {
  const box = $("#job-progress");
  const at = latestStep(events);
  box.hidden = !(at || j.status === "running");
  if (box.hidden) return;
  const bar = $("#progress-bar");
  const text = $("#progress-text");
  const eta = $("#progress-eta");
  if (!at) {
    bar.removeAttribute("value");
    text.textContent = t("job.progress_waiting");
  } else {
    const done = j.status === "succeeded" ? 1 : Math.min(1, at.step / at.total);
    const step = j.status === "succeeded" ? at.total : at.step;
    bar.value = done;
    text.textContent = t("job.progress_steps", { step: fmtNumber(step), total: fmtNumber(at.total),
      percent: Math.floor(done * 100) });
  }
  eta.textContent = "";
  if (j.status === "running" && j.estimated_finish) {
    const minutes = Math.round((j.estimated_finish * 1000 - Date.now()) / 60000);
    eta.textContent = t(minutes >= 1 ? "job.eta" : "job.eta_soon", { time: fmtClock(j.estimated_finish), minutes });
  }
  eta.hidden = !eta.textContent;
}

// a generation job's second chart is the token accuracy; the encoder tasks' is their dev metrics
function perToken() { return job && job.task === "generation"; }

function series(events, key) {
  // the end-of-training summary (train_runtime, average train_loss) is not a point of the curve
  return events.filter((e) => e.type === "metrics" && e.data && typeof e.data[key] === "number"
      && typeof e.data.step === "number" && !("train_runtime" in e.data))
    .map((e) => ({ x: e.data.step, y: e.data[key] })).sort((a, b) => a.x - b.x);
}

function renderEvents(events) {
  const asc = [...events].reverse(); // the API lists newest first
  const ds = (label, data, i) => ({ label, data, borderColor: palette()[i], backgroundColor: palette()[i], pointRadius: 2, tension: 0.2 });
  const linear = { x: { type: "linear", title: { display: true, text: t("col.step") }, ticks: { precision: 0 } } };
  const loss = [ds(t("job.train_loss"), series(asc, "train_loss"), 0)];
  // the dev loss: eval_loss of the encoder tasks, valid_loss (OpenAI's name) of generation
  const evalLoss = [...series(asc, "eval_loss"), ...series(asc, "valid_loss")].sort((a, b) => a.x - b.x);
  if (evalLoss.length) loss.push(ds(t("job.dev_loss"), evalLoss, 1));
  chart("loss-chart", { type: "line", data: { datasets: loss }, options: { scales: linear, plugins: { legend: { position: "bottom" } } } });
  if (perToken()) {
    // generation: the share of learned tokens predicted right, on the training batches and the validation file
    const acc = [ds(t("job.train_token_accuracy"), series(asc, "train_mean_token_accuracy"), 0)];
    const dev = series(asc, "valid_mean_token_accuracy");
    if (dev.length) acc.push(ds(t("job.dev_token_accuracy"), dev, 1));
    chart("accuracy-chart", { type: "line", data: { datasets: acc }, options: {
      scales: { ...linear, y: { min: 0, max: 1 } }, plugins: { legend: { position: "bottom" } } } });
    return renderEventTable(events);
  }
  const keys = new Set();
  for (const e of asc) if (e.type === "metrics" && e.data) for (const k of Object.keys(e.data))
    if (k.startsWith("eval_") && !/(loss|runtime|per_second|_n$|epoch)$/.test(k) && typeof e.data[k] === "number") keys.add(k);
  const dev = [...keys].slice(0, 5).map((k, i) => ds(metricName(k), series(asc, k), i));
  chart("dev-chart", { type: "line", data: { datasets: dev }, options: { scales: linear, plugins: { legend: { position: "bottom" } } } });
  renderEventTable(events);
}

function renderEventTable(events) {
  const tbody = clear($("#events-table tbody"));
  for (const e of events) {
    tbody.append(el("tr", { class: e.level }, el("td", { class: "nowrap" }, fmtClock(e.created_at)),
      el("td", {}, e.type === "metrics" ? t("job.metrics") : e.level), el("td", {}, serverText(e.message))));
  }
}

async function renderCheckpoints() {
  const cps = (await api(`/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}/checkpoints?limit=100`)).data;
  const tbody = clear($("#checkpoints-table tbody"));
  for (const c of cps) {
    const m = Object.entries(c.metrics || {}).filter(([k]) => k !== "step")
      .map(([k, v]) => `${metricName(k, true)} ${typeof v === "number" ? v.toFixed(4) : v}`).join(" · ");
    const name = c.fine_tuned_model_checkpoint;
    tbody.append(el("tr", {}, el("td", { class: "num" }, c.step_number),
      el("td", {}, el("code", { title: name }, name.slice(name.lastIndexOf(":") + 1))), el("td", {}, m)));
  }
  $("#checkpoints-empty").hidden = cps.length > 0;
}

async function refresh() {
  const [j, ev] = await Promise.all([api(`/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}`),
    api(`/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?limit=1000`)]);
  renderJob(j);
  renderProgress(j, ev.data);
  if (ev.data.length !== nEvents) {
    nEvents = ev.data.length;
    renderEvents(ev.data);
    await renderCheckpoints();
  }
}

async function control(action) {
  const err = $("#job-error");
  try { renderJob(await api(`/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}/${action}`, { method: "POST" })); }
  catch (e) { showError(err, e); }
  nEvents = -1;
  await refresh();
  start();
}
$("#pause-button").addEventListener("click", () => control("pause"));
$("#resume-button").addEventListener("click", () => control("resume"));
$("#cancel-button").addEventListener("click", () => { if (confirm(t("job.confirm_cancel"))) control("cancel"); });

let stop = null;
function start() {
  if (stop) stop();
  stop = poll(refresh, 1500, () => job && !FINAL.includes(job.status));
}
try { await refresh(); } catch (e) { showError($("#job-error"), e); }
start();
ready();
