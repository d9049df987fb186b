// grounded serve, the page: tabs, busy state and wiring. Loaded last (see index.html).
"use strict";

// ------------------------------------------------------------------------------------------ wiring
function showTab(name) {
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.tab === name);
  $("panel-segment").hidden = name !== "segment";
  $("panel-review").hidden = name !== "review";
}

async function pollHealth() {
  try {
    const h = await (await fetch("/v1/health")).json();
    const other = h.busy && pending === 0;
    $("busy").hidden = !(other || pending > 0);
    $("busy").textContent = other ? "models busy (another request)…" : "working…";
  } catch (err) { /* the server is gone: keep the page as it is */ }
}

window.addEventListener("DOMContentLoaded", async () => {
  for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => showTab(t.dataset.tab));
  $("seg-file").addEventListener("change", chooseFile);
  $("seg-run").addEventListener("click", runSegment);
  $("seg-prompt").addEventListener("keydown", (ev) => { if (ev.key === "Enter") runSegment(); });
  $("seg-ontology").addEventListener("change", () => { if ($("seg-ontology").value) $("seg-prompt").value = ""; });
  $("seg-prompt").addEventListener("input", () => { if ($("seg-prompt").value.trim()) $("seg-ontology").value = ""; });
  $("seg-json").addEventListener("click", downloadJson);
  $("seg-png").addEventListener("click", downloadPng);
  for (const id of ["rv-filter", "rv-class"]) $(id).addEventListener("change", applyFilters);
  initEditing();
  $("rv-score").addEventListener("input", applyFilters);
  $("rv-prev").addEventListener("click", () => step(-1));
  $("rv-next").addEventListener("click", () => step(1));
  $("rv-reviewed").addEventListener("change", () => setReviewed($("rv-reviewed").checked));
  document.addEventListener("keydown", onKey);
  setInterval(pollHealth, 3000);
  try { await initSegment(); } catch (err) { showMessage("seg-message", err.message, true); }
  const hasRun = await initReview();
  if (hasRun && new URLSearchParams(location.search).get("tab") !== "segment") showTab("review");
  document.body.dataset.ready = "1";
});
