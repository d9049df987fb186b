// grounded serve: the page. Plain JavaScript, no build step, no network beyond this server.
"use strict";

// supervision's default palette (sv.ColorPalette.DEFAULT), so the page and the PNGs of `grounded segment` agree.
const PALETTE = ["#a351fb", "#ff4040", "#ffa1a0", "#ff7633", "#ffb633", "#d1d435", "#4cfb12", "#94cf1a", "#40de8a",
  "#1b9640", "#00d6c1", "#2e9caa", "#00c4ff", "#364797", "#6675ff", "#0019ef", "#863aff", "#530087", "#cd3aff",
  "#ff97ca", "#ff39c9"];
const colorOf = (classId) => PALETTE[((classId % PALETTE.length) + PALETTE.length) % PALETTE.length];
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------------------ requests
let pending = 0;
function setBusy(delta) {
  pending += delta;
  $("busy").hidden = pending === 0;
  document.body.dataset.busy = pending > 0 ? "1" : "0";
}

async function api(path, options = {}) {
  setBusy(1);
  try {
    const response = await fetch(path, options);
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.blob();
    if (!response.ok) throw new Error(body && body.detail ? body.detail : `${response.status} ${response.statusText}`);
    return body;
  } finally {
    setBusy(-1);
  }
}

function showMessage(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// ------------------------------------------------------------------------------------------ masks
// COCO compressed RLE (pycocotools rleFrString): counts alternate 0s and 1s, column-major.
function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// -> Uint8Array(h * w), row-major, 1 inside the mask.
function decodeMask(rle) {
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  const counts = typeof rle.counts === "string" ? rleCounts(rle.counts) : rle.counts;
  let pos = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (i % 2 === 1) {
      for (let q = pos; q < pos + n; q++) out[(q % h) * w + Math.floor(q / h)] = 1;
    }
    pos += n;
  }
  return out;
}

function hexRgb(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// Draw the image, then every shown detection: translucent mask, box, label. `items`: [{det, mask, style}]
// where style is "normal", "selected" or "rejected" (rejected: outline only, dashed).
function drawScene(canvas, image, items) {
  const w = image.naturalWidth, h = image.naturalHeight;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  if (items.length) {
    const frame = ctx.getImageData(0, 0, w, h);
    const px = frame.data;
    for (const { det, mask, style } of items) {
      if (!mask || style === "rejected" || mask.length !== w * h) continue;
      const [r, g, b] = hexRgb(colorOf(det.class_id));
      const a = style === "selected" ? 0.6 : 0.45;
      for (let i = 0; i < mask.length; i++) {
        if (!mask[i]) continue;
        const o = i * 4;
        px[o] = px[o] * (1 - a) + r * a; px[o + 1] = px[o + 1] * (1 - a) + g * a; px[o + 2] = px[o + 2] * (1 - a) + b * a;
      }
    }
    ctx.putImageData(frame, 0, 0);
  }
  const thick = Math.max(1, Math.round(Math.max(w, h) / 400));
  const font = Math.max(11, Math.round(Math.max(w, h) / 60));
  ctx.font = `${font}px sans-serif`;
  for (const { det, style, label } of items) {
    const [x0, y0, x1, y1] = det.bbox_xyxy;
    ctx.strokeStyle = style === "rejected" ? "#888" : colorOf(det.class_id);
    ctx.lineWidth = style === "selected" ? thick * 3 : thick;
    ctx.setLineDash(style === "rejected" ? [thick * 4, thick * 3] : []);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const text = label;
    const tw = ctx.measureText(text).width + 6;
    ctx.fillStyle = style === "rejected" ? "#888" : colorOf(det.class_id);
    ctx.fillRect(x0, Math.max(0, y0 - font - 4), tw, font + 4);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x0 + 3, Math.max(font, y0 - 4));
  }
  ctx.setLineDash([]);
  canvas.dataset.drawn = String(items.length);
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this image"));
    img.src = src;
  });
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// ------------------------------------------------------------------------------------------ segment tab
const seg = { file: null, image: null, result: null, masks: [], hidden: new Set(), asked: null };

async function initSegment() {
  const info = await api("/v1/models");
  $("seg-box").value = info.defaults.box_threshold;
  $("seg-text").value = info.defaults.text_threshold;
  $("seg-nms").value = info.defaults.nms;
  for (const [name, classes] of Object.entries(info.ontologies)) {
    const opt = new Option(`${name} (${classes.length} classes)`, name);
    $("seg-ontology").add(opt);
  }
  updateSliderLabels();
  const m = info.models;
  $("status").textContent = info.available
    ? `models: ${m.detector || "?"} + ${m.segmenter || "?"}${info.loaded ? "" : " (load on first use)"}`
    : "no models on this server (review only)";
  if (!info.available) $("seg-run").disabled = true;
}

function updateSliderLabels() {
  $("seg-box-value").textContent = Number($("seg-box").value).toFixed(2);
  $("seg-text-value").textContent = Number($("seg-text").value).toFixed(2);
}

async function chooseFile() {
  const file = $("seg-file").files[0];
  if (!file) return;
  seg.file = file; seg.result = null; seg.masks = []; seg.asked = null;
  try {
    seg.image = await loadImage(URL.createObjectURL(file));
    drawSegment();
    showMessage("seg-message", `${file.name}: ${seg.image.naturalWidth}x${seg.image.naturalHeight}`);
  } catch (err) {
    seg.image = null;
    showMessage("seg-message", `${file.name}: ${err.message}`, true);
  }
}

async function runSegment() {
  if (!seg.file) { showMessage("seg-message", "choose an image first", true); return; }
  const prompt = $("seg-prompt").value.trim(), ontology = $("seg-ontology").value;
  if (!prompt && !ontology) { showMessage("seg-message", "type a prompt or pick an ontology", true); return; }
  const form = new FormData();
  form.append("image", seg.file);
  if (ontology) form.append("ontology", ontology); else form.append("prompt", prompt);
  form.append("box_threshold", $("seg-box").value);
  form.append("text_threshold", $("seg-text").value);
  form.append("nms", $("seg-nms").value);
  $("seg-run").disabled = true;
  showMessage("seg-message", "segmenting…");
  try {
    const result = await api("/v1/segment", { method: "POST", body: form });
    seg.result = result;
    seg.masks = result.detections.map((d) => (d.mask ? decodeMask(d.mask) : null));
    seg.hidden = new Set();
    seg.asked = { box: result.options.box_threshold, text: result.options.text_threshold, nms: result.options.nms,
                  prompt, ontology, file: seg.file };
    const reused = result.reused_image_encoding ? ", image encodings reused" : "";
    showMessage("seg-message", `${result.detections.length} detection(s) in ${result.seconds} s${reused}`);
    $("seg-json").disabled = false; $("seg-png").disabled = false;
    renderSegmentList();
    drawSegment();
  } catch (err) {
    showMessage("seg-message", err.message, true);
  } finally {
    $("seg-run").disabled = false;
  }
}

// Detections shown: above the box slider (exact: NMS keeps the best-scored boxes first) and toggled on.
function segmentShown() {
  if (!seg.result) return [];
  const box = Number($("seg-box").value);
  return seg.result.detections.map((det, i) => ({ det, i })).filter(({ det, i }) => det.confidence > box && !seg.hidden.has(i));
}

function renderSegmentList() {
  const list = $("seg-list");
  list.innerHTML = "";
  if (!seg.result) return;
  const box = Number($("seg-box").value);
  seg.result.detections.forEach((det, i) => {
    const li = document.createElement("li");
    li.dataset.index = i;
    const on = document.createElement("input");
    on.type = "checkbox"; on.checked = !seg.hidden.has(i); on.title = "show";
    on.addEventListener("change", () => { if (on.checked) seg.hidden.delete(i); else seg.hidden.add(i); drawSegment(); });
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = colorOf(det.class_id);
    const name = document.createElement("span"); name.className = "name"; name.textContent = det.class_name;
    name.title = det.phrase || det.class_name;
    const score = document.createElement("span"); score.className = "score"; score.textContent = det.confidence.toFixed(2);
    li.append(on, sw, name, score);
    li.hidden = det.confidence <= box;
    list.append(li);
  });
}

function drawSegment() {
  if (!seg.image) return;
  const items = segmentShown().map(({ det, i }) => ({ det, mask: seg.masks[i], style: "normal",
    label: `${det.class_name} ${det.confidence.toFixed(2)}` }));
  drawScene($("seg-canvas"), seg.image, items);
}

let rerunTimer = null;
function onThreshold() {
  updateSliderLabels();
  if (!seg.result || !seg.asked) return;
  const box = Number($("seg-box").value), text = Number($("seg-text").value);
  const same = seg.asked.file === seg.file && text === seg.asked.text && $("seg-nms").value === seg.asked.nms;
  if (same && box >= seg.asked.box) {  // a stricter box threshold: filter what we have, no model run
    renderSegmentList(); drawSegment();
    showMessage("seg-message", `${segmentShown().length} of ${seg.result.detections.length} shown (filtered here)`);
    return;
  }
  clearTimeout(rerunTimer);  // looser, or another text threshold: ask again (the server reuses the image's encodings)
  rerunTimer = setTimeout(runSegment, 400);
}

function downloadJson() {
  const shown = new Set(segmentShown().map(({ i }) => i));
  const body = { ...seg.result, detections: seg.result.detections.filter((_, i) => shown.has(i)) };
  const stem = (seg.file.name || "image").replace(/\.[^.]+$/, "");
  download(new Blob([JSON.stringify(body, null, 1)], { type: "application/json" }), `${stem}.json`);
}

function downloadPng() {
  const stem = (seg.file.name || "image").replace(/\.[^.]+$/, "");
  $("seg-canvas").toBlob((blob) => download(blob, `${stem}_grounded.png`), "image/png");
}

// ------------------------------------------------------------------------------------------ review tab
const rv = { run: null, images: [], shown: [], current: -1, record: null, image: null, masks: [], review: null,
             selected: 0, token: 0 };

async function initReview() {
  try {
    rv.run = await api("/v1/run");
  } catch (err) {
    showMessage("run-info", "No run to review: start the server with `grounded serve --run OUT`.");
    return false;
  }
  $("run-info").textContent = `run ${rv.run.out}: ${rv.run.classes.length} classes`;
  $("run-info").title = `images from ${rv.run.images_root}`;
  rv.run.classes.forEach((name, k) => $("rv-class").add(new Option(name, String(k))));
  await refreshImages();
  if (rv.shown.length) await openImage(rv.shown[0]);
  return true;
}

async function refreshImages() {
  rv.images = await api("/v1/run/images");
  applyFilters();
}

function passes(entry) {
  const f = $("rv-filter").value, cls = $("rv-class").value, below = Number($("rv-score").value);
  if (f === "unreviewed" && (entry.reviewed || entry.status !== "labelled")) return false;
  if (f === "reviewed" && !entry.reviewed) return false;
  if (f === "empty" && !(entry.status === "labelled" && entry.class_ids.length === 0)) return false;
  if (f === "error" && entry.status !== "error") return false;
  if (f === "missing" && entry.status !== "missing") return false;
  if (cls !== "" && !entry.class_ids.includes(Number(cls))) return false;
  if (below < 1 && !entry.scores.some((s) => s !== null && s < below)) return false;
  return true;
}

function applyFilters() {
  $("rv-score-value").textContent = Number($("rv-score").value).toFixed(2);
  rv.shown = rv.images.map((_, i) => i).filter((i) => passes(rv.images[i]));
  $("rv-count").textContent = `${rv.shown.length} of ${rv.images.length} images; ` +
    `${rv.images.filter((e) => e.reviewed).length} reviewed`;
  const list = $("rv-images");
  list.innerHTML = "";
  for (const i of rv.shown) {
    const e = rv.images[i];
    const li = document.createElement("li");
    li.dataset.index = i;
    li.className = (i === rv.current ? "current " : "") + e.status;
    const mark = document.createElement("span"); mark.className = "mark";
    mark.textContent = e.status === "error" ? "!" : e.reviewed ? "✓" : e.decisions ? "•" : "";
    const file = document.createElement("span"); file.className = "file"; file.textContent = e.file; file.title = e.file;
    const n = document.createElement("span"); n.textContent = e.status === "labelled" ? String(e.class_ids.length) : e.status;
    li.append(mark, file, n);
    li.addEventListener("click", () => openImage(i));
    list.append(li);
  }
}

async function openImage(index) {
  const entry = rv.images[index];
  if (!entry) return;
  const token = ++rv.token;
  rv.current = index; rv.selected = 0;
  $("rv-name").textContent = entry.file;
  for (const li of $("rv-images").children) li.classList.toggle("current", Number(li.dataset.index) === index);
  const q = encodeURIComponent(entry.file);
  try {
    const [record, image] = await Promise.all([api(`/v1/run/record?file=${q}`), loadImage(`/v1/run/image?file=${q}`)]);
    if (token !== rv.token) return;  // another image was opened meanwhile
    rv.record = record; rv.image = image;
    rv.masks = record.detections.map((d) => (d.mask ? decodeMask(d.mask) : null));
    rv.review = record.review ? { reviewed: record.review.reviewed, detections: { ...record.review.detections } }
                              : { reviewed: false, detections: {} };
    const notes = [];
    if (record.error) notes.push(`could not be read: ${record.error}`);
    if (record.stale) notes.push("an earlier review was made on other detections (the run was redone); it is ignored");
    showMessage("rv-message", notes.join("; ") || `${record.detections.length} detection(s)`, Boolean(record.error));
  } catch (err) {
    if (token !== rv.token) return;
    rv.record = null; rv.image = null;
    showMessage("rv-message", err.message, true);
  }
  renderReview();
}

function decisionOf(i) { return rv.review.detections[String(i)] || {}; }

function renderReview() {
  const list = $("rv-list");
  list.innerHTML = "";
  $("rv-reviewed").checked = Boolean(rv.review && rv.review.reviewed);
  if (!rv.record || !rv.image) { const c = $("rv-canvas"); c.width = 1; c.height = 1; return; }
  const classes = rv.run.classes;
  rv.record.detections.forEach((det, i) => {
    const d = decisionOf(i);
    const classId = d.class_id !== undefined ? d.class_id : det.class_id;
    const li = document.createElement("li");
    li.dataset.index = i;
    li.className = [d.status || "", i === rv.selected ? "selected" : ""].join(" ").trim();
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = colorOf(classId);
    const name = document.createElement("span"); name.className = "name";
    name.textContent = d.class_id !== undefined ? `was ${det.class_name}` : "";
    name.title = det.phrase || det.class_name;
    const score = document.createElement("span"); score.className = "score";
    score.textContent = det.confidence === null ? "" : det.confidence.toFixed(2);
    const select = document.createElement("select"); select.className = "relabel"; select.title = "change class";
    classes.forEach((c, k) => select.add(new Option(c, String(k))));
    select.value = String(classId);
    select.addEventListener("change", () => decide(i, { class_id: Number(select.value) }));
    const accept = document.createElement("button"); accept.className = "accept"; accept.textContent = "✓";
    accept.title = "accept (a)"; accept.addEventListener("click", () => decide(i, { status: "accepted" }));
    const reject = document.createElement("button"); reject.className = "reject"; reject.textContent = "✗";
    reject.title = "reject (r)"; reject.addEventListener("click", () => decide(i, { status: "rejected" }));
    li.addEventListener("click", (ev) => { if (ev.target === li || ev.target === name) { rv.selected = i; renderReview(); } });
    li.append(sw, select, name, score, accept, reject);
    list.append(li);
  });
  const items = rv.record.detections.map((det, i) => {
    const d = decisionOf(i);
    const shown = { ...det, class_id: d.class_id !== undefined ? d.class_id : det.class_id };
    const style = d.status === "rejected" ? "rejected" : i === rv.selected ? "selected" : "normal";
    const label = `${classes[shown.class_id] || det.class_name}${det.confidence === null ? "" : " " + det.confidence.toFixed(2)}`;
    return { det: shown, mask: rv.masks[i], style, label };
  });
  drawScene($("rv-canvas"), rv.image, items);
}

// change: {status} | {class_id} | {undecided: true}
async function decide(i, change) {
  if (!rv.record || i >= rv.record.detections.length) return;
  const key = String(i);
  const d = { ...decisionOf(i) };
  if (change.undecided) delete rv.review.detections[key];
  else {
    if (change.status) d.status = change.status;
    if (change.class_id !== undefined) { d.class_id = change.class_id; d.status = d.status || "accepted"; }
    if (d.class_id === rv.record.detections[i].class_id) delete d.class_id;
    rv.review.detections[key] = d;
  }
  rv.selected = i;
  renderReview();
  await saveReview();
}

async function saveReview() {
  const file = rv.record.image;
  try {
    const saved = await api(`/v1/run/review?file=${encodeURIComponent(file)}`, {
      method: "PUT", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reviewed: rv.review.reviewed, detections: rv.review.detections }),
    });
    const entry = rv.images[rv.current];
    if (entry && entry.file === file) { entry.reviewed = saved.reviewed; entry.decisions = Object.keys(saved.detections).length; }
    showMessage("rv-message", `saved: ${Object.keys(saved.detections).length} decision(s)${saved.reviewed ? ", reviewed" : ""}`);
    document.body.dataset.saved = String(Number(document.body.dataset.saved || 0) + 1);
    applyFilters();
  } catch (err) {
    showMessage("rv-message", `not saved: ${err.message}`, true);
  }
}

async function setReviewed(value) {
  if (!rv.record || rv.record.error) return;
  rv.review.reviewed = value;
  await saveReview();
  renderReview();
}

function step(delta) {
  const at = rv.shown.indexOf(rv.current);
  const next = rv.shown[Math.min(rv.shown.length - 1, Math.max(0, (at < 0 ? 0 : at + delta)))];
  if (next !== undefined && next !== rv.current) openImage(next);
}

function onKey(ev) {
  if ($("panel-review").hidden || ev.target.matches("input[type=text], select, textarea")) return;
  const n = rv.record ? rv.record.detections.length : 0;
  const key = ev.key;
  if (key === "j" || key === "ArrowRight") step(1);
  else if (key === "k" || key === "ArrowLeft") step(-1);
  else if (key === "ArrowDown" && n) { rv.selected = (rv.selected + 1) % n; renderReview(); }
  else if (key === "ArrowUp" && n) { rv.selected = (rv.selected + n - 1) % n; renderReview(); }
  else if (key === "a" && n) decide(rv.selected, { status: "accepted" });
  else if ((key === "r" || key === "x") && n) decide(rv.selected, { status: "rejected" });
  else if (key === "u" && n) decide(rv.selected, { undecided: true });
  else if (/^[1-9]$/.test(key) && n && Number(key) <= rv.run.classes.length) decide(rv.selected, { class_id: Number(key) - 1 });
  else if (key === "Enter") { setReviewed(true).then(() => step(1)); }
  else return;
  ev.preventDefault();
}

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
  for (const id of ["seg-box", "seg-text"]) $(id).addEventListener("input", onThreshold);
  $("seg-nms").addEventListener("change", onThreshold);
  $("seg-json").addEventListener("click", downloadJson);
  $("seg-png").addEventListener("click", downloadPng);
  for (const id of ["rv-filter", "rv-class"]) $(id).addEventListener("change", applyFilters);
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
