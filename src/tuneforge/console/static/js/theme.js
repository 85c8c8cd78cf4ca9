// Runs before the page paints: apply the stored theme (or the system's) so there is no flash.
(function () {
  var stored = null;
  try { stored = localStorage.getItem("tf_theme"); } catch (e) { /* storage disabled */ }
  var dark = stored ? stored === "dark" : window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-theme", dark ? "dark" : "light");
})();
