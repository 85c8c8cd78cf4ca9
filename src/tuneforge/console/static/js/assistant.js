// The customer-service assistant: list and create assistants, try a conversation (generated answers show their
// citations), work the handover queue, give and export feedback.
import { ready, $, api, clear, el, flash, fmtNumber, fmtTime, requireKey, show, showError, t } from "./app.js";

await requireKey();
const BASE = "/v1/solutions/assistant";
const error = $("#asst-error");
let assistants = [];
let sessionId = null;

function current() { return $("#chat-assistant").value; }

async function loadAssistants(select) {
  assistants = (await api(`${BASE}/assistants?limit=100`)).data;
  const tbody = clear($("#assistants-table tbody"));
  for (const a of assistants) {
    tbody.append(el("tr", {}, el("td", {}, a.name, " ", el("code", {}, a.id)), el("td", {}, fmtNumber(a.passages)),
      el("td", {}, a.intent_model ? el("code", {}, a.intent_model) : t("asst.retrieval_only")), el("td", {}, a.encoder),
      el("td", {}, a.config.answer_mode === "generate" ? t("asst.mode_generate_short", { writer: a.config.writer })
        : t("asst.mode_retrieval_short")),
      el("td", {}, fmtNumber(a.config.threshold, 2)), el("td", {}, fmtTime(a.created))));
  }
  show($("#assistants-empty"), assistants.length === 0);
  const sel = clear($("#chat-assistant"));
  for (const a of assistants) sel.append(el("option", { value: a.id }, a.name));
  if (select) sel.value = select;
  const none = assistants.length === 0;
  for (const id of ["#chat-assistant", "#chat-text", "#chat-send", "#chat-new", "#export-button"]) $(id).disabled = none;
  sessionId = null;
  clear($("#chat-log"));
  await Promise.all([loadFeedback(), loadQueue()]);
}

async function loadModels() {
  const models = (await api("/v1/models")).data;
  const own = clear($("#new-model"));
  own.append(el("option", { value: "" }, t("asst.no_model")));
  for (const m of models.filter((x) => x.owned_by !== "tuneforge" && x.task === "classification")) {
    own.append(el("option", { value: m.id }, m.id));
  }
  const enc = clear($("#new-encoder"));
  for (const m of models.filter((x) => x.owned_by === "tuneforge" && x.task !== "generation")) {
    enc.append(el("option", { value: m.id }, m.id));
  }
  const writer = clear($("#new-writer"));
  writer.append(el("option", { value: "" }, t("asst.no_writer")));
  for (const m of models.filter((x) => x.task === "generation")) writer.append(el("option", { value: m.id }, m.id));
}

function parseKnowledge(text) {
  const rows = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    let row;
    try { row = JSON.parse(line); } catch (e) { throw new Error(t("asst.bad_line", { line: i + 1 })); }
    if (!row || typeof row.answer !== "string") throw new Error(t("asst.bad_line", { line: i + 1 }));
    rows.push({ question: row.question || "", answer: row.answer, intent: row.intent || null });
  });
  return rows;
}

function addTurn(role, text, reply) {
  const li = el("li", { class: role === "user" ? "user" : "bot" },
    el("span", { class: "visually-hidden" }, role === "user" ? t("asst.you") : t("asst.bot")), " ", text);
  if (reply) {
    const badge = reply.handover ? el("span", { class: "badge warn" }, t("asst.handover"))
      : el("span", { class: "badge ok" }, t("asst.answered"));
    const src = reply.passages && reply.passages[0] && !reply.handover ? ` · ${t("asst.source")}: ${reply.passages[0].title || reply.passages[0].id}` : "";
    li.append(el("span", { class: "meta" }, badge, " ", t("asst.meta", {
      intent: reply.intent ?? "—", confidence: fmtNumber(reply.confidence, 2), reason: reasonText(reply.reason) })
      + (reply.citations && reply.citations.length ? "" : src)));
    if (reply.citations && reply.citations.length) {
      const list = el("ol", { class: "cites", "aria-label": t("asst.citations") });
      for (const c of reply.citations) {
        list.append(el("li", { value: String(c.n) }, c.title || c.id, c.source ? ` (${c.source}${c.anchor ? "#" + c.anchor : ""})` : ""));
      }
      li.append(list);
    }
    if (!reply.handover) {
      const fb = el("span", { class: "fb" });
      const send = async (helpful) => {
        try {
          await api(`${BASE}/assistants/${current()}/feedback`, { method: "POST", body: { session_id: sessionId, turn: reply.turn, helpful } });
          clear(fb).append(el("span", { class: "muted" }, t("asst.thanks")));
          await loadFeedback();
        } catch (e) { showError(error, e); }
      };
      fb.append(el("button", { type: "button", class: "icon", onclick: () => send(true) }, t("asst.helpful_yes")),
        el("button", { type: "button", class: "icon", onclick: () => send(false) }, t("asst.helpful_no")));
      li.append(fb);
    }
  }
  $("#chat-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

function reasonText(reason) {
  const key = `asst.reason.${reason}`;
  const text = t(key);
  return text === key ? reason : text;
}

async function loadQueue() {
  const tbody = clear($("#queue-table tbody"));
  const id = current();
  if (!id) { show($("#queue-empty"), true); return; }
  const items = (await api(`${BASE}/assistants/${id}/handovers`)).data;
  for (const h of items) {
    const intent = h.best_intent ? t("asst.best_intent", { intent: h.intent ?? "—", best: h.best_intent }) : (h.intent ?? "—");
    const resolve = el("button", { type: "button", onclick: async () => {
      try {
        await api(`${BASE}/assistants/${id}/handovers/${h.session_id}/resolve`, { method: "POST" });
        flash(t("asst.resolved"));
        await loadQueue();
      } catch (e) { showError(error, e); }
    } }, t("asst.resolve"));
    tbody.append(el("tr", {}, el("td", {}, fmtTime(h.handed_over_at)), el("td", {}, h.message ?? "—"),
      el("td", {}, reasonText(h.reason)), el("td", {}, intent), el("td", {}, el("code", {}, h.session_id)),
      el("td", {}, resolve)));
  }
  show($("#queue-empty"), items.length === 0);
}

async function loadFeedback() {
  const tbody = clear($("#feedback-table tbody"));
  const id = current();
  if (!id) { show($("#feedback-empty"), true); $("#fb-summary").textContent = ""; return; }
  const rows = (await api(`${BASE}/assistants/${id}/feedback`)).data;
  for (const f of rows.slice().reverse()) {
    tbody.append(el("tr", {}, el("td", {}, fmtTime(f.created)), el("td", {}, f.message), el("td", {}, f.intent ?? "—"),
      el("td", {}, f.helpful ? t("asst.yes") : t("asst.no")), el("td", {}, f.correct_intent ?? "—")));
  }
  show($("#feedback-empty"), rows.length === 0);
  const helpful = rows.filter((f) => f.helpful).length;
  $("#fb-summary").textContent = t("asst.fb_summary", { n: rows.length, helpful });
}

$("#chat-assistant").addEventListener("change", async () => {
  sessionId = null; clear($("#chat-log")); showError(error, null);
  await Promise.all([loadFeedback(), loadQueue()]);
});
$("#chat-new").addEventListener("click", () => { sessionId = null; clear($("#chat-log")); $("#chat-text").disabled = false; $("#chat-send").disabled = false; });
$("#chat-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("#chat-text").value.trim();
  if (!text || !current()) return;
  showError(error, null);
  try {
    if (!sessionId) sessionId = (await api(`${BASE}/assistants/${current()}/sessions`, { method: "POST" })).id;
    addTurn("user", text);
    $("#chat-text").value = "";
    const reply = await api(`${BASE}/assistants/${current()}/sessions/${sessionId}/messages`, { method: "POST", body: { text } });
    addTurn("bot", reply.text, reply);
    if (reply.handover) {
      $("#chat-text").disabled = true; $("#chat-send").disabled = true; flash(t("asst.handed_over"));
      await loadQueue();
    }
  } catch (e) { showError(error, e); }
});
$("#create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError(error, null);
  const name = $("#new-name").value.trim();
  if (!name) { showError(error, new Error(t("asst.need_name"))); $("#new-name").focus(); return; }
  try {
    const knowledge = parseKnowledge($("#new-kb").value);
    const handover = $("#new-handover").value.split(",").map((s) => s.trim()).filter(Boolean);
    const config = { threshold: Number($("#new-threshold").value), handover_intents: handover,
      answer_mode: $("#new-mode").value };
    if ($("#new-writer").value) config.writer = $("#new-writer").value;
    $("#create-button").disabled = true;
    const a = await api(`${BASE}/assistants`, { method: "POST", body: {
      name, knowledge, intent_model: $("#new-model").value || null, encoder: $("#new-encoder").value, config } });
    flash(t("asst.created", { name: a.name }));
    $("#create-form").reset();
    await loadAssistants(a.id);
  } catch (e) { showError(error, e); } finally { $("#create-button").disabled = false; }
});
$("#export-button").addEventListener("click", async () => {
  try {
    const data = await api(`${BASE}/assistants/${current()}/feedback/export`);
    const lines = data.intents.map((r) => JSON.stringify({ text: r.text, label: r.label })).join("\n");
    const url = URL.createObjectURL(new Blob([lines + (lines ? "\n" : "")], { type: "application/jsonl" }));
    el("a", { href: url, download: `${current()}-feedback.jsonl` }).click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    flash(t("asst.exported", { n: data.intents.length }));
  } catch (e) { showError(error, e); }
});

try {
  await Promise.all([loadModels(), loadAssistants()]);
} catch (e) { showError(error, e); }
ready();
