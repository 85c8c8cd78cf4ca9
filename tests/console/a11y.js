// Accessibility checks run inside the page (no network, no axe bundle): returns a list of violations.
// Names: form controls, buttons and links have accessible names; canvases are images with a label.
// Structure: <html lang>, one h1, no skipped heading levels, unique ids.
// Contrast: every visible text meets WCAG AA against its effective background (4.5:1, 3:1 for large text).
() => {
  const out = [];
  const visible = (e) => {
    if (e.closest("[hidden], details:not([open]) > :not(summary)")) return false;
    const s = getComputedStyle(e);
    if (s.visibility === "hidden" || s.display === "none") return false;
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const textOf = (id) => { const n = document.getElementById(id); return n ? n.textContent.trim() : ""; };
  const nameOf = (e) => {
    if (e.getAttribute("aria-label")) return e.getAttribute("aria-label").trim();
    if (e.getAttribute("aria-labelledby")) return e.getAttribute("aria-labelledby").split(/\s+/).map(textOf).join(" ").trim();
    if (e.id) { const l = document.querySelector(`label[for="${CSS.escape(e.id)}"]`); if (l && l.textContent.trim()) return l.textContent.trim(); }
    const wrap = e.closest("label"); if (wrap && wrap.textContent.trim()) return wrap.textContent.trim();
    if (["BUTTON", "A", "SUMMARY"].includes(e.tagName)) return (e.textContent || "").trim() || (e.getAttribute("title") || "").trim();
    return (e.getAttribute("title") || "").trim();
  };
  const where = (e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${e.className && typeof e.className === "string" ? "." + e.className.split(" ")[0] : ""}`;

  if (!document.documentElement.lang) out.push("html has no lang");
  for (const e of document.querySelectorAll("input, select, textarea")) {
    if (e.type === "hidden") continue;
    if (!nameOf(e)) out.push(`form control without a label: ${where(e)}`);
  }
  for (const e of document.querySelectorAll("button, a[href], summary")) {
    if (visible(e) && !nameOf(e)) out.push(`${e.tagName.toLowerCase()} without an accessible name: ${where(e)}`);
  }
  for (const c of document.querySelectorAll("canvas")) {
    if (c.getAttribute("role") !== "img" || !nameOf(c)) out.push(`canvas without role=img and a label: ${where(c)}`);
  }
  const h1 = document.querySelectorAll("h1");
  if (h1.length !== 1) out.push(`${h1.length} h1 elements`);
  let last = 0;
  for (const h of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    if (!visible(h)) continue;
    const level = Number(h.tagName[1]);
    if (last && level > last + 1) out.push(`heading level skipped: h${last} then ${where(h)} "${h.textContent.trim()}"`);
    last = level;
  }
  const ids = new Map();
  for (const e of document.querySelectorAll("[id]")) ids.set(e.id, (ids.get(e.id) || 0) + 1);
  for (const [id, n] of ids) if (n > 1) out.push(`id used ${n} times: ${id}`);

  // ---- contrast ----
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]); };
  const background = (e) => {
    const layers = [];
    for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (const l of layers.reverse()) bg = over(l, bg);
    return bg;
  };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const seen = new Set();
  for (const e of document.body.querySelectorAll("*")) {
    if (["SCRIPT", "STYLE", "CANVAS", "OPTION", "svg", "path"].includes(e.tagName)) continue;
    const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !visible(e) || e.closest(".visually-hidden, .skip, [disabled]")) continue;
    const s = getComputedStyle(e);
    const bg = background(e);
    const fg = over(parse(s.color), bg);
    const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const r = ratio(fg, bg);
    const key = `${where(e)}:${r.toFixed(2)}`;
    if (r < need && !seen.has(key)) {
      seen.add(key);
      out.push(`contrast ${r.toFixed(2)} < ${need} for ${where(e)} "${e.textContent.trim().slice(0, 30)}"`);
    }
  }
  return out;
}
