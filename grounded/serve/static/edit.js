// grounded serve, the page: the Review tab's editing tools. An object being drawn is a draft: new ("add") or an
// existing object being fixed ("fix", starting from its box and mask). Clicks (left: foreground, shift-click or
// right-click: background) and a dragged box go to POST /v1/segment/points with all the draft's clicks so far and
// the previous answer's mask_id (SAM's refinement; the image is sent once, then its image_id); the brush and the
// eraser paint the draft's pixels. Saving a draft writes the review (review.js). Undo / redo step through the
// draft's states, else through the review's. "Find more" runs the teacher with another phrase (POST /v1/segment)
// and adds what it finds as candidates to accept or reject.
"use strict";

Object.assign(rv, { tool: "select", draft: null, history: [], future: [], imageId: null, blob: null, radius: 8,
                    stroke: null, drag: null });

function resetEditing() {
  rv.draft = null; rv.history = []; rv.future = []; rv.imageId = null; rv.blob = null; rv.drag = null;
  showDraft();
}

function setTool(tool) {
  rv.tool = tool;
  for (const b of document.querySelectorAll("#rv-tools button[data-tool]")) b.classList.toggle("active", b.dataset.tool === tool);
  $("rv-canvas").dataset.tool = tool;
}

// ------------------------------------------------------------------------------------------ history
function snapshot() {
  return JSON.stringify({ reviewed: rv.review.reviewed, detections: Object.fromEntries(
    Object.entries(rv.review.detections).map(([k, d]) => [k, plain(d)])), added: rv.review.added.map(plain) });
}

function remember() {  // before every change of the review
  if (!rv.review) return;
  rv.history.push(snapshot());
  rv.future = [];
}

function restore(text) {
  const state = JSON.parse(text);
  Object.assign(rv.review, { reviewed: state.reviewed, detections: state.detections, added: state.added });
}

async function undoRedo(back) {
  const d = rv.draft;
  if (d && (back ? d.past.length : d.ahead.length)) {  // the draft's own states first
    (back ? d.ahead : d.past).push(draftState(d));
    Object.assign(d, (back ? d.past : d.ahead).pop());
    renderReview(); showDraft();
    return;
  }
  const from = back ? rv.history : rv.future, to = back ? rv.future : rv.history;
  if (!from.length || !rv.record) return;
  to.push(snapshot());
  restore(from.pop());  // the revision stays the latest saved one: undo is a new save, not a rewind
  renderReview();
  await saveReview();
}

// ------------------------------------------------------------------------------------------ drafts
function draftState(d) {
  return { points: d.points.slice(), labels: d.labels.slice(), box: d.box, mask: d.mask && d.mask.slice(),
           maskId: d.maskId, start: d.start };
}

function pushDraft(d) { d.past.push(draftState(d)); d.ahead = []; }

function newDraft(kind, key) {
  const h = rv.record.height, w = rv.record.width;
  const o = key ? objects().find((x) => x.key === key) : null;
  rv.draft = { kind, key: o ? o.key : null, points: [], labels: [], box: null, maskId: null, past: [], ahead: [],
               mask: o && o.mask ? o.mask.slice() : new Uint8Array(h * w), start: o && o.mask ? o.mask.slice() : null,
               fixBox: o ? o.box : null, classId: o ? o.classId : Number($("rv-new-class").value), source: "clicks" };
  showDraft();
  return rv.draft;
}

function ensureDraft() {
  return rv.draft || newDraft("add", null);
}

function showDraft() {
  const d = rv.draft;
  $("rv-draft").hidden = !d;
  if (d) {
    const what = d.kind === "fix" ? `fixing ${rv.run.classes[d.classId]}` : "new object";
    $("rv-draft-info").textContent = `${what}: ${d.points.length} click(s)${d.box ? ", box" : ""}` +
      (d.score !== undefined ? `, predicted IoU ${d.score.toFixed(2)}` : "");
  }
}

function draftItems() {
  const d = rv.draft;
  if (!d || !rv.record) return [];
  const box = maskBox(d.mask, rv.record.height, rv.record.width) || d.box || [0, 0, 0, 0];
  const classId = d.kind === "fix" ? d.classId : Number($("rv-new-class").value);
  return [{ det: { class_id: classId, bbox_xyxy: box }, mask: d.mask, style: "selected", label: "editing" }];
}

function drawDraftMarks(canvas) {
  const d = rv.draft, ctx = canvas.getContext("2d");
  const r = Math.max(4, Math.round(Math.max(canvas.width, canvas.height) / 150));
  if (d) {
    d.points.forEach(([x, y], i) => {
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = d.labels[i] ? "#1e8449" : "#c0392b"; ctx.fill();
      ctx.lineWidth = 2; ctx.strokeStyle = "#fff"; ctx.stroke();
    });
  }
  const box = rv.drag ? rv.drag.box : d && d.box;
  if (box) {
    ctx.setLineDash([6, 4]); ctx.lineWidth = 2; ctx.strokeStyle = "#fff";
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]); ctx.setLineDash([]);
  }
}

async function imageBlob() {
  if (!rv.blob) rv.blob = await (await fetch(`/v1/run/image?file=${encodeURIComponent(rv.record.image)}`)).blob();
  return rv.blob;
}

// Ask the server for the draft's mask: all its clicks, its box, and the prior (the last answer, else its start).
async function askMask(d, retried = false) {
  const h = rv.record.height, w = rv.record.width, tick = performance.now();
  const form = new FormData();
  form.append("points", JSON.stringify(d.points));
  form.append("labels", JSON.stringify(d.labels));
  const box = d.box || d.fixBox;
  if (box) form.append("box", JSON.stringify(box.map((v) => Math.round(v))));
  if (d.maskId) form.append("mask_id", d.maskId);
  else if (d.start) form.append("mask", JSON.stringify(encodeMask(d.start, h, w)));
  if (rv.imageId) form.append("image_id", rv.imageId);
  else form.append("image", await imageBlob(), rv.record.image);
  let body;
  try {
    body = await api("/v1/segment/points", { method: "POST", body: form });
  } catch (err) {
    if (err.status === 404 && !retried) {  // the server no longer holds the image (or the answer): start again
      rv.imageId = null; d.maskId = null;
      return askMask(d, true);
    }
    if (err.status === 501) noClicks(err.message);
    showMessage("rv-message", `no mask: ${err.message}`, true);
    return;
  }
  if (d !== rv.draft) return;  // discarded meanwhile
  rv.imageId = body.image_id; d.maskId = body.mask_id;
  d.mask = decodeMask(body.detections[0].mask); d.score = body.detections[0].mask_score;
  renderReview(); showDraft();
  const canvas = $("rv-canvas");
  canvas.dataset.answers = String(Number(canvas.dataset.answers || 0) + 1);
  canvas.dataset.clickMs = String(Math.round(performance.now() - tick));  // click -> mask on screen
}

async function clickAt(x, y, label) {
  const d = ensureDraft();
  pushDraft(d);
  d.points.push([x, y]); d.labels.push(label);
  showDraft();
  await askMask(d);
}

function paint(x, y, value) {
  const d = rv.draft, h = rv.record.height, w = rv.record.width, r = rv.radius;
  for (let yy = Math.max(0, Math.floor(y - r)); yy <= Math.min(h - 1, Math.ceil(y + r)); yy++) {
    for (let xx = Math.max(0, Math.floor(x - r)); xx <= Math.min(w - 1, Math.ceil(x + r)); xx++) {
      if ((xx - x) ** 2 + (yy - y) ** 2 <= r * r) d.mask[yy * w + xx] = value;
    }
  }
}

async function saveDraft() {
  const d = rv.draft;
  if (!d || !rv.record) return;
  const h = rv.record.height, w = rv.record.width;
  if (!maskBox(d.mask, h, w)) { showMessage("rv-message", "the mask is empty: click on the object first", true); return; }
  remember();
  const mask = encodeMask(d.mask, h, w);
  if (d.kind === "add") {
    rv.review.added.push({ id: Math.random().toString(36).slice(2, 12), status: "accepted", source: d.source,
                           class_id: Number($("rv-new-class").value), mask });
  } else if (d.key.startsWith("a:")) {
    const a = addedOf(d.key.slice(2));
    Object.assign(a, { mask, _mask: undefined });
  } else {
    const i = d.key.slice(2), old = rv.review.detections[i] || {};
    rv.review.detections[i] = { ...old, status: old.status === "rejected" || !old.status ? "accepted" : old.status, mask,
                                _mask: undefined };
  }
  rv.draft = null; showDraft();
  renderReview();
  await saveReview();
}

function discardDraft() { rv.draft = null; showDraft(); renderReview(); }

// ------------------------------------------------------------------------------------------ find more
async function findMore() {
  const phrase = $("rv-find-phrase").value.trim();
  if (!phrase || !rv.record) { showMessage("rv-message", "type what else to find, e.g. a side mirror", true); return; }
  const form = new FormData();
  form.append("image", await imageBlob(), rv.record.image);
  form.append("prompt", phrase);
  try {
    const result = await api("/v1/segment", { method: "POST", body: form });
    rv.imageId = result.image_id;
    remember();
    const classId = Number($("rv-new-class").value);
    for (const det of result.detections) {
      rv.review.added.push({ id: Math.random().toString(36).slice(2, 12), status: "candidate", source: "find_more",
                             class_id: classId, phrase: det.phrase || phrase, confidence: det.confidence, mask: det.mask });
    }
    showMessage("rv-message", `${result.detections.length} candidate(s) for "${phrase}": accept or reject them`);
    renderReview();
    if (result.detections.length) await saveReview();
  } catch (err) {
    showMessage("rv-message", `find more: ${err.message}`, true);
  }
}

// ------------------------------------------------------------------------------------------ canvas and keys
// Image pixel of a mouse event on the canvas (drawn at the image's size, shown scaled with object-fit: contain).
function imagePoint(ev) {
  const c = $("rv-canvas"), rect = c.getBoundingClientRect();
  const scale = Math.min(rect.width / c.width, rect.height / c.height);
  const x = (ev.clientX - rect.left - (rect.width - c.width * scale) / 2) / scale;
  const y = (ev.clientY - rect.top - (rect.height - c.height * scale) / 2) / scale;
  return [Math.min(c.width - 1, Math.max(0, x)), Math.min(c.height - 1, Math.max(0, y))];
}

// Client coordinates of image pixel (x, y): what a test clicks.
function imageToClient(x, y) {
  const c = $("rv-canvas"), rect = c.getBoundingClientRect();
  const scale = Math.min(rect.width / c.width, rect.height / c.height);
  return [rect.left + (rect.width - c.width * scale) / 2 + x * scale, rect.top + (rect.height - c.height * scale) / 2 + y * scale];
}

function objectAt(x, y) {
  const w = rv.record.width, found = objects().filter((o) => o.mask && o.mask[Math.floor(y) * w + Math.floor(x)]);
  return found.length ? found[found.length - 1].key : null;
}

function onCanvasDown(ev) {
  if (!rv.record || !rv.image || ev.button > 2) return;
  const [x, y] = imagePoint(ev);
  if (rv.tool === "select") {
    const key = objectAt(x, y);
    if (key) { rv.selected = key; renderReview(); }
  } else if (rv.tool === "click") {
    clickAt(Math.round(x), Math.round(y), ev.button === 2 || ev.shiftKey ? 0 : 1);
  } else if (rv.tool === "box") {
    rv.drag = { x, y, box: [x, y, x, y] };
  } else {  // brush / eraser: on the draft, else on the selected object (a fix), else on a new object
    const d = rv.draft || (rv.selected && objects().some((o) => o.key === rv.selected && o.mask)
      ? newDraft("fix", rv.selected) : newDraft("add", null));
    pushDraft(d);
    if (d.kind === "add" && !d.points.length) d.source = "brush";
    rv.stroke = rv.tool === "brush" ? 1 : 0;
    paint(x, y, rv.stroke); renderReview();
  }
}

function onCanvasMove(ev) {
  if (rv.drag) {
    const [x, y] = imagePoint(ev);
    rv.drag.box = [Math.min(rv.drag.x, x), Math.min(rv.drag.y, y), Math.max(rv.drag.x, x), Math.max(rv.drag.y, y)];
    renderReview();
  } else if (rv.stroke !== null && rv.draft) {
    const [x, y] = imagePoint(ev);
    paint(x, y, rv.stroke); renderReview();
  }
}

async function onCanvasUp() {
  if (rv.drag) {
    const box = rv.drag.box;
    rv.drag = null;
    if (box[2] - box[0] < 2 || box[3] - box[1] < 2) { renderReview(); return; }
    const d = ensureDraft();
    pushDraft(d);
    d.box = box; if (d.kind === "add" && !d.points.length) d.source = "box";
    await askMask(d);
  } else if (rv.stroke !== null) {
    rv.stroke = null;
    if (rv.draft) { rv.draft.maskId = null; rv.draft.start = rv.draft.mask.slice(); }  // the next click starts here
    const canvas = $("rv-canvas");
    canvas.dataset.strokes = String(Number(canvas.dataset.strokes || 0) + 1);
  }
}

function onEditKey(ev) {
  const key = ev.key, d = rv.draft;
  if ((ev.ctrlKey || ev.metaKey) && key.toLowerCase() === "z") { undoRedo(!ev.shiftKey); return true; }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return false;
  const tools = { v: "select", c: "click", b: "box", p: "brush", e: "eraser" };
  if (tools[key] && !document.querySelector(`#rv-tools button[data-tool=${tools[key]}]`).disabled) setTool(tools[key]);
  else if (key === "z") undoRedo(true);
  else if (key === "y") undoRedo(false);
  else if (key === "n" && rv.record) { newDraft("add", null); if (rv.tool === "select") setTool("click"); }
  else if (key === "f" && rv.record && rv.selected) { newDraft("fix", rv.selected); if (rv.tool === "select") setTool("click"); }
  else if (key === "[" || key === "]") { rv.radius = Math.max(1, rv.radius + (key === "]" ? 2 : -2)); $("rv-radius").value = rv.radius; }
  else if (d && (key === "s" || key === "Enter")) saveDraft();
  else if (d && key === "Escape") discardDraft();
  else if (d && d.kind === "add" && /^[1-9]$/.test(key) && Number(key) <= rv.run.classes.length) {
    $("rv-new-class").value = String(Number(key) - 1); renderReview();
  } else return false;
  return true;
}

// This server's models take no clicks (GET /v1/models "clicks", or a 501): the click and box tools are off.
function noClicks(why) {
  for (const tool of ["click", "box"]) document.querySelector(`#rv-tools button[data-tool=${tool}]`).disabled = true;
  if (rv.tool === "click" || rv.tool === "box") setTool("select");
  $("rv-clicks-note").textContent = why;
  $("rv-clicks-note").hidden = false;
}

async function checkClicks() {
  try {
    const clicks = (await api("/v1/models")).clicks;
    if (clicks && clicks.available === false) noClicks(clicks.why);
  } catch (err) { /* told again on the first click */ }
}

function initEditing() {
  const canvas = $("rv-canvas");
  canvas.addEventListener("mousedown", onCanvasDown);
  canvas.addEventListener("mousemove", onCanvasMove);
  window.addEventListener("mouseup", onCanvasUp);
  canvas.addEventListener("contextmenu", (ev) => { if (rv.tool !== "select") ev.preventDefault(); });
  for (const b of document.querySelectorAll("#rv-tools button[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
  $("rv-undo").addEventListener("click", () => undoRedo(true));
  $("rv-redo").addEventListener("click", () => undoRedo(false));
  $("rv-save-draft").addEventListener("click", saveDraft);
  $("rv-discard").addEventListener("click", discardDraft);
  $("rv-radius").addEventListener("input", () => { rv.radius = Number($("rv-radius").value); });
  $("rv-find").addEventListener("click", findMore);
  $("rv-find-phrase").addEventListener("keydown", (ev) => { if (ev.key === "Enter") findMore(); });
  $("rv-by").addEventListener("change", () => localStorage.setItem("grounded-reviewer", $("rv-by").value.trim()));
  setTool("select");
  checkClicks();
}
