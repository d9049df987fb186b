// grounded serve, the page: the Segment tab (upload, prompt, options, detections, downloads).
"use strict";

// ------------------------------------------------------------------------------------------ segment tab
const seg = { file: null, image: null, result: null, masks: [], hidden: new Set(), asked: null, loaded: false };

// The option controls this page can show, by request field. Which of them appear, with which default and
// choices, is what GET /v1/models says the loaded models honour (`options`); the others are never sent.
const SEG_CONTROLS = {
  box_threshold: { id: "seg-box", label: "Box threshold" },
  text_threshold: { id: "seg-text", label: "Text threshold" },
  nms: { id: "seg-nms", label: "NMS" },
};

async function initSegment() {
  const info = await api("/v1/models");
  showModels(info);
  for (const [name, classes] of Object.entries(info.ontologies)) {
    const opt = new Option(`${name} (${classes.length} classes)`, name);
    $("seg-ontology").add(opt);
  }
  if (!info.available) $("seg-run").disabled = true;
}

// The models' names in the header and the option controls; again once they have loaded.
function showModels(info) {
  const m = info.models;
  const names = m.model ? m.model : `${m.detector || "?"} + ${m.segmenter || "?"}`;
  $("status").textContent = info.available
    ? `models: ${names}${info.loaded ? "" : " (load on first use)"}`
    : "no models on this server (review only)";
  seg.loaded = info.loaded;
  buildOptions(info);
}

// One control per option the server offers (a slider for a number in [0, 1], a list for choices), keeping
// the values already set; a note says which options these models do not take, and why.
function buildOptions(info) {
  const box = $("seg-options");
  const kept = Object.fromEntries(Object.keys(SEG_CONTROLS).map((n) => [n, optionValue(n)]));
  box.innerHTML = "";
  for (const [name, spec] of Object.entries(info.options)) {
    const control = SEG_CONTROLS[name];
    if (!control) continue;
    const label = document.createElement("label");
    label.dataset.option = name;
    label.append(`${control.label} `);
    let input;
    if (spec.choices) {
      input = document.createElement("select");
      for (const c of spec.choices) input.add(new Option(c, c));
      input.addEventListener("change", onThreshold);
    } else {
      const out = document.createElement("output"); out.id = `${control.id}-value`;
      label.append(out);
      input = document.createElement("input");
      Object.assign(input, { type: "range", min: spec.min, max: spec.max, step: 0.01 });
      input.addEventListener("input", onThreshold);
    }
    input.id = control.id;
    input.value = kept[name] !== null ? kept[name] : spec.default;
    label.append(input);
    box.append(label);
  }
  const skipped = Object.entries(info.refused || {}).filter(([name]) => SEG_CONTROLS[name]);
  $("seg-refused").hidden = skipped.length === 0;
  $("seg-refused").textContent = skipped.map(([name, why]) => `no ${SEG_CONTROLS[name].label.toLowerCase()}: ${why}`).join("; ");
  updateSliderLabels();
}

// The control's value (a number for sliders), or null when these models do not take that option.
function optionValue(name) {
  const el = $(SEG_CONTROLS[name].id);
  if (!el) return null;
  return el.type === "range" ? Number(el.value) : el.value;
}

function updateSliderLabels() {
  for (const { id } of Object.values(SEG_CONTROLS)) {
    if ($(`${id}-value`)) $(`${id}-value`).textContent = Number($(id).value).toFixed(2);
  }
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
  const asked = {};
  for (const name of Object.keys(SEG_CONTROLS)) {
    asked[name] = optionValue(name);
    if (asked[name] !== null) form.append(name, String(asked[name]));
  }
  $("seg-run").disabled = true;
  showMessage("seg-message", "segmenting…");
  try {
    const result = await api("/v1/segment", { method: "POST", body: form });
    if (!seg.loaded) showModels(await api("/v1/models"));  // loaded now: what they refuse is known for sure
    seg.result = result;
    seg.masks = result.detections.map((d) => (d.mask ? decodeMask(d.mask) : null));
    seg.hidden = new Set();
    seg.asked = { ...asked, prompt, ontology, file: seg.file };
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
  const box = optionValue("box_threshold") || 0;
  return seg.result.detections.map((det, i) => ({ det, i })).filter(({ det, i }) => det.confidence > box && !seg.hidden.has(i));
}

function renderSegmentList() {
  const list = $("seg-list");
  list.innerHTML = "";
  if (!seg.result) return;
  const box = optionValue("box_threshold") || 0;
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
  const box = optionValue("box_threshold");
  const same = seg.asked.file === seg.file &&
    Object.keys(SEG_CONTROLS).every((n) => n === "box_threshold" || optionValue(n) === seg.asked[n]);
  if (same && box !== null && box >= seg.asked.box_threshold) {  // stricter: filter what we have, no model run
    renderSegmentList(); drawSegment();
    showMessage("seg-message", `${segmentShown().length} of ${seg.result.detections.length} shown (filtered here)`);
    return;
  }
  clearTimeout(rerunTimer);  // looser, or another option: ask again (the server reuses the image's encodings)
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
