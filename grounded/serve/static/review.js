// grounded serve, the page: the Review tab (browse a labelling run, accept / reject / relabel, keys).
"use strict";

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
