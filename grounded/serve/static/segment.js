// grounded serve, the page: the Segment tab (upload, prompt, thresholds, detections, downloads).
"use strict";

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
