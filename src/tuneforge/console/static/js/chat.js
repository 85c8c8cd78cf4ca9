// The chat playground of a generative model's page: a system prompt, temperature and max tokens; each turn sends
// the whole conversation to POST /v1/chat/completions with `stream: true` and shows the reply as it streams in
// (Stop aborts the request: the reply so far is kept). The conversation stays on the page and in this tab's
// session storage with the settings, so a reload keeps them; Clear conversation forgets the turns.
import { $, apiStream, clear, errorText, fmtNumber, showError, t } from "./app.js";
import { bubble } from "./conversation.js";

/** Wire the playground for `modelId`; the card `#chat-card` is shown. */
export function setupChat(modelId) {
  const card = $("#chat-card"), form = $("#chat-form"), log = $("#chat-log"), input = $("#chat-input");
  const system = $("#chat-system"), temperature = $("#chat-temperature"), maxTokens = $("#chat-max-tokens");
  const send = $("#chat-send"), stop = $("#chat-stop"), status = $("#chat-status"), error = $("#chat-error");
  const storeKey = `tf_chat:${modelId}`;
  let turns = []; // [{role: "user" | "assistant", content}], in order; the system prompt is sent first, apart
  let controller = null;

  function save() {
    try {
      sessionStorage.setItem(storeKey, JSON.stringify({ turns, system: system.value, temperature: temperature.value,
        max_tokens: maxTokens.value }));
    } catch (e) { /* storage full or blocked: the conversation stays on the page only */ }
  }
  function restore() {
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(storeKey) || "null"); } catch (e) { /* ignore */ }
    if (!saved) return;
    turns = Array.isArray(saved.turns) ? saved.turns.filter((m) => m && typeof m.content === "string") : [];
    if (typeof saved.system === "string") system.value = saved.system;
    if (saved.temperature !== undefined) temperature.value = saved.temperature;
    if (saved.max_tokens !== undefined) maxTokens.value = saved.max_tokens;
  }
  function show(turn) {
    const li = bubble(turn.role, turn.content || (turn.role === "assistant" ? t("chat.empty_reply") : ""));
    log.append(li);
    return li;
  }
  function render() {
    clear(log);
    for (const m of turns) show(m);
    sync();
  }
  function sync() {
    $("#chat-empty").hidden = log.children.length > 0;
    log.hidden = log.children.length === 0;
    log.dataset.turns = String(turns.length);
    log.scrollTop = log.scrollHeight;
  }
  function busy(on) {
    card.dataset.state = on ? "streaming" : "idle";
    send.disabled = on;
    stop.hidden = !on;
    log.setAttribute("aria-busy", String(on));
  }

  async function ask(text) {
    const user = { role: "user", content: text };
    turns.push(user);
    const asked = show(user);
    const reply = { role: "assistant", content: "" };
    const li = bubble("assistant", "");
    li.dataset.streaming = "1";
    log.append(li);
    const out = li.querySelector(".content");
    sync();
    const messages = [...(system.value.trim() ? [{ role: "system", content: system.value }] : []),
      ...turns.map(({ role, content }) => ({ role, content }))];
    const body = { model: modelId, messages, temperature: Number(temperature.value),
      max_tokens: Number(maxTokens.value), stream: true, stream_options: { include_usage: true } };
    controller = new AbortController();
    busy(true);
    status.textContent = t("chat.generating");
    let finish = null, usage = null, failed = null;
    try {
      await apiStream("/v1/chat/completions", body, { signal: controller.signal, onData: (chunk) => {
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) return;
        if (choice.delta && choice.delta.content) {
          reply.content += choice.delta.content;
          out.textContent = reply.content;
          log.scrollTop = log.scrollHeight;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      } });
    } catch (e) {
      failed = e;
    }
    const stopped = failed && failed.name === "AbortError";
    controller = null;
    busy(false);
    delete li.dataset.streaming;
    if (!turns.includes(user)) return; // the conversation was cleared meanwhile
    if (failed && !(stopped && reply.content)) {
      // nothing came back: the turn is taken back, its text returned to the message box
      li.remove();
      asked.remove();
      turns = turns.filter((m) => m !== user);
      if (!input.value) input.value = text;
      status.textContent = stopped ? t("chat.stopped_empty") : "";
      if (!stopped) showError(error, failed);
    } else {
      if (!reply.content) out.textContent = t("chat.empty_reply");
      if (stopped) li.dataset.stopped = "1";
      turns.push(reply);
      const notes = [];
      if (stopped) notes.push(t("chat.stopped"));
      else if (finish === "length") notes.push(t("chat.finish_length"));
      if (usage) notes.push(t("chat.usage", { prompt: fmtNumber(usage.prompt_tokens), completion: fmtNumber(usage.completion_tokens) }));
      status.textContent = notes.join(" ");
    }
    li.dataset.finish = stopped ? "stopped" : (finish || "");
    save();
    sync();
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (controller) return;
    showError(error, null);
    if (!form.reportValidity()) return;
    const text = input.value.trim();
    if (!text) { input.focus(); return; }
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); form.requestSubmit(); }
  });
  stop.addEventListener("click", () => { if (controller) controller.abort(); input.focus(); });
  $("#chat-clear").addEventListener("click", () => {
    if (controller) controller.abort();
    turns = []; // the settings stay
    save();
    render();
    showError(error, null);
    status.textContent = t("chat.cleared");
    input.focus();
  });
  for (const f of [system, temperature, maxTokens]) f.addEventListener("change", save);

  restore();
  render();
  card.hidden = false;
}
