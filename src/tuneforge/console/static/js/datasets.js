import { ready, $, api, clear, el, errorText, flash, fmtBytes, fmtTime, requireKey, show, t } from "./app.js";

await requireKey();
const tbody = $("#files-table tbody");

async function load() {
  const files = (await api("/v1/files?limit=200")).data;
  clear(tbody);
  for (const f of files) {
    tbody.append(el("tr", {},
      el("td", {}, el("a", { href: `/console/datasets/${encodeURIComponent(f.id)}` }, f.filename)),
      el("td", {}, el("code", {}, f.id)),
      el("td", { class: "num" }, fmtBytes(f.bytes)),
      el("td", {}, fmtTime(f.created_at)),
      el("td", {}, el("button", { type: "button", class: "danger", "aria-label": t("datasets.delete_named", { name: f.filename }),
        onclick: () => remove(f) }, t("action.delete")))));
  }
  show($("#files-empty"), files.length === 0);
}

async function remove(f) {
  if (!confirm(t("datasets.confirm_delete", { name: f.filename }))) return;
  try { await api(`/v1/files/${encodeURIComponent(f.id)}`, { method: "DELETE" }); flash(t("datasets.deleted")); }
  catch (e) { alert(errorText(e)); }
  await load();
}

async function upload(file) {
  const status = $("#upload-status");
  status.textContent = t("datasets.uploading", { name: file.name });
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", file, file.name);
  try {
    const f = await api("/v1/files", { method: "POST", form });
    status.textContent = t("datasets.uploaded", { name: f.filename });
    location.href = `/console/datasets/${encodeURIComponent(f.id)}`;
  } catch (e) {
    status.textContent = "";
    status.append(el("span", { class: "error", role: "alert" }, errorText(e)));
  }
}

const zone = $("#dropzone");
const input = $("#file-input");
input.addEventListener("change", () => { if (input.files[0]) upload(input.files[0]); });
for (const name of ["dragenter", "dragover"]) zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
for (const name of ["dragleave", "drop"]) zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("over"); });
zone.addEventListener("drop", (e) => { const f = e.dataTransfer.files[0]; if (f) upload(f); });
await load();
ready();
