import { ready, $, api, errorText, setApiKey, setupChrome, showError, t } from "./app.js";

setupChrome();
const form = $("#login-form");
const input = $("#api-key");
input.focus();
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = input.value.trim();
  const err = $("#login-error");
  if (!key) { showError(err, new Error(t("login.empty"))); input.focus(); return; }
  $("#sign-in").disabled = true;
  try {
    await api("/v1/api_keys/current", { key });
    setApiKey(key);
    const next = new URLSearchParams(location.search).get("next");
    location.href = next && next.startsWith("/console/") ? next : "/console/datasets";
  } catch (e) {
    err.textContent = e.status === 401 ? t("login.bad_key") : errorText(e);
    err.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  } finally {
    $("#sign-in").disabled = false;
  }
});
ready();
