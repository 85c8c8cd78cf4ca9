// Conversations as role-labelled bubbles: the chat playground (model page) and a chat file's preview (dataset
// page). Texts are text nodes, never parsed as HTML.
import { el, t } from "./app.js";

const ROLES = ["system", "user", "assistant"];

/** The name of a role in the page's language ("System", "User", "Assistant"); another role as it is. */
export function roleName(role) { return ROLES.includes(role) ? t(`role.${role}`) : String(role); }

/** One message as a list item: its role, then its text. `notLearned` marks an assistant turn of weight 0. */
export function bubble(role, content, { notLearned = false, name = null } = {}) {
  const head = el("span", { class: "role" }, roleName(role), name ? ` · ${name}` : "");
  if (notLearned) {
    head.append(" ", el("span", { class: "badge warn", title: t("conv.not_learned_help") }, t("conv.not_learned")));
  }
  const li = el("li", { class: `bubble ${ROLES.includes(role) ? role : "other"}${notLearned ? " not-learned" : ""}`,
    "data-role": role }, head, el("div", { class: "content" }, content));
  if (notLearned) li.dataset.weight = "0";
  return li;
}

/** A list of messages (`{role, content, weight?, name?}`) as bubbles, labelled by `label`. */
export function bubbles(messages, label) {
  return el("ol", { class: "bubbles", "aria-label": label },
    messages.map((m) => bubble(m.role, m.content, { notLearned: m.role === "assistant" && m.weight === 0, name: m.name })));
}
