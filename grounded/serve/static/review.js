// grounded serve, the page: the Review tab (browse a labelling run, the review queue, accept / reject / relabel /
// delete, the objects people added, saving with who and the revision edited; a 409 shows the current state).
// The editing tools (clicks, box, brush, eraser, undo / redo, find more) are in edit.js.
"use strict";

// ------------------------------------------------------------------------------------------ review tab
const rv = { run: null, images: [], shown: [], current: -1, record: null, image: null, masks: [], review: null,
             selected: "d:0", token: 0, queue: null };

async function initReview() {
  try {
    rv.run = await api("/v1/run");
  } catch (err) {
    showMessage("run-info", "No run to review: start the server with `grounded serve --run OUT`.");
    return false;
  }
  $("run-info").textContent = `run ${rv.run.out}: ${rv.run.classes.length} classes`;
  $("run-info").title = `images from ${rv.run.images_root}`;
  rv.run.classes.forEach((name, k) => {
    $("rv-class").add(new Option(name, String(k)));
    $("rv-new-class").add(new Option(`${k + 1 <= 9 ? k + 1 + " " : ""}${name}`, String(k)));
  });
  $("rv-by").value = localStorage.getItem("grounded-reviewer") || "";
  await refreshImages();
  if (rv.shown.length) await openImage(rv.shown[0]);
  return true;
}

async function refreshImages() {
  rv.images = await api("/v1/run/images");
  await applyFilters();
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

// The images shown, in the run's order or, for "queue", most needing a person first (GET /v1/run/queue).
async function applyFilters() {
  $("rv-score-value").textContent = Number($("rv-score").value).toFixed(2);
  const byFile = new Map(rv.images.map((e, i) => [e.file, i]));
  let order = rv.images.map((_, i) => i);
  rv.queue = null;
  if ($("rv-filter").value === "queue") {
    const queue = await api("/v1/run/queue?limit=10000");
    rv.queue = new Map(queue.map((q) => [q.file, q]));
    order = queue.map((q) => byFile.get(q.file)).filter((i) => i !== undefined);
  }
  rv.shown = order.filter((i) => rv.queue || passes(rv.images[i]));
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
    const n = document.createElement("span");
    const q = rv.queue && rv.queue.get(e.file);
    n.textContent = q ? q.doubt.toFixed(2) : e.status === "labelled" ? String(e.class_ids.length) : e.status;
    if (q) li.title = q.reasons.join("\n");
    li.append(mark, file, n);
    li.addEventListener("click", () => openImage(i));
    list.append(li);
  }
}

function asReview(saved) {
  return saved ? { revision: saved.revision || 0, reviewed: Boolean(saved.reviewed), by: saved.by, at: saved.at,
                   detections: { ...saved.detections }, added: (saved.added || []).map((a) => ({ ...a })) }
               : { revision: 0, reviewed: false, detections: {}, added: [] };
}

async function openImage(index) {
  const entry = rv.images[index];
  if (!entry) return;
  const token = ++rv.token;
  rv.current = index; rv.selected = "d:0";
  resetEditing();
  $("rv-name").textContent = entry.file;
  for (const li of $("rv-images").children) li.classList.toggle("current", Number(li.dataset.index) === index);
  const q = encodeURIComponent(entry.file);
  try {
    const [record, image] = await Promise.all([api(`/v1/run/record?file=${q}`), loadImage(`/v1/run/image?file=${q}`)]);
    if (token !== rv.token) return;  // another image was opened meanwhile
    rv.record = record; rv.image = image;
    rv.masks = record.detections.map((d) => (d.mask ? decodeMask(d.mask) : null));
    rv.review = asReview(record.review);
    const notes = [];
    if (record.error) notes.push(`could not be read: ${record.error}`);
    if (record.stale) notes.push("an earlier review was made on other detections (the run was redone); it is ignored");
    if (rv.queue && rv.queue.get(entry.file)) notes.push(rv.queue.get(entry.file).reasons.join("; "));
    showMessage("rv-message", notes.join("; ") || `${record.detections.length} detection(s)`, Boolean(record.error));
  } catch (err) {
    if (token !== rv.token) return;
    rv.record = null; rv.image = null;
    showMessage("rv-message", err.message, true);
  }
  renderReview();
}

function decisionOf(i) { return rv.review.detections[String(i)] || {}; }
function addedOf(id) { return rv.review.added.find((a) => a.id === id); }

// Every object on the image: the record's detections ("d:i") and the objects people added ("a:id").
function objects() {
  if (!rv.record) return [];
  const found = rv.record.detections.map((det, i) => {
    const d = decisionOf(i);
    const mask = d.mask ? (d._mask = d._mask || decodeMask(d.mask)) : rv.masks[i];
    return { key: `d:${i}`, classId: d.class_id !== undefined ? d.class_id : det.class_id, status: d.status || "",
             mask, box: d.mask ? maskBox(mask, rv.record.height, rv.record.width) : det.bbox_xyxy,
             score: det.confidence, note: [d.class_id !== undefined ? `was ${det.class_name}` : "", d.mask ? "fixed" : ""]
               .filter(Boolean).join(", "), title: det.phrase || det.class_name };
  });
  const added = rv.review.added.map((a) => {
    const mask = a._mask = a._mask || decodeMask(a.mask);
    return { key: `a:${a.id}`, classId: a.class_id, status: a.status === "candidate" ? "candidate" : a.status,
             mask, box: maskBox(mask, rv.record.height, rv.record.width), score: a.confidence === undefined ? null : a.confidence,
             note: a.source === "find_more" ? `found: ${a.phrase || ""}` : `added (${a.source})`, title: a.by || "" };
  });
  return found.concat(added);
}

function renderReview() {
  const list = $("rv-list");
  list.innerHTML = "";
  $("rv-reviewed").checked = Boolean(rv.review && rv.review.reviewed);
  if (!rv.record || !rv.image) { const c = $("rv-canvas"); c.width = 1; c.height = 1; return; }
  const classes = rv.run.classes;
  const all = objects();
  for (const o of all) {
    const li = document.createElement("li");
    li.dataset.key = o.key;
    if (o.key.startsWith("d:")) li.dataset.index = o.key.slice(2);
    li.className = [o.status, o.key === rv.selected ? "selected" : ""].join(" ").trim();
    const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = colorOf(o.classId);
    const name = document.createElement("span"); name.className = "name"; name.textContent = o.note; name.title = o.title;
    const score = document.createElement("span"); score.className = "score";
    score.textContent = o.score === null || o.score === undefined ? "" : o.score.toFixed(2);
    const select = document.createElement("select"); select.className = "relabel"; select.title = "change class";
    classes.forEach((c, k) => select.add(new Option(c, String(k))));
    select.value = String(o.classId);
    select.addEventListener("change", () => decide(o.key, { class_id: Number(select.value) }));
    const accept = document.createElement("button"); accept.className = "accept"; accept.textContent = "✓";
    accept.title = "accept (a)"; accept.addEventListener("click", () => decide(o.key, { status: "accepted" }));
    const reject = document.createElement("button"); reject.className = "reject"; reject.textContent = "✗";
    reject.title = "reject (r)"; reject.addEventListener("click", () => decide(o.key, { status: "rejected" }));
    li.addEventListener("click", (ev) => { if (ev.target === li || ev.target === name) { rv.selected = o.key; renderReview(); } });
    li.append(sw, select, name, score, accept, reject);
    list.append(li);
  }
  const editing = rv.draft ? rv.draft.key : null;
  const items = all.filter((o) => o.key !== editing && o.box).map((o) => ({
    det: { class_id: o.classId, bbox_xyxy: o.box }, mask: o.mask,
    style: o.status === "rejected" ? "rejected" : o.key === rv.selected ? "selected" : "normal",
    label: `${classes[o.classId]}${o.score === null || o.score === undefined ? "" : " " + o.score.toFixed(2)}` }));
  drawScene($("rv-canvas"), rv.image, items.concat(draftItems()));
  drawDraftMarks($("rv-canvas"));
}

// change: {status} | {class_id} | {undecided: true} | {deleted: true}, on object `key` ("d:i" or "a:id")
async function decide(key, change) {
  if (!rv.record) return;
  remember();
  if (key.startsWith("a:")) {
    const a = addedOf(key.slice(2));
    if (!a) return;
    if (change.deleted) rv.review.added = rv.review.added.filter((x) => x !== a);
    if (change.status) a.status = change.status;
    if (change.class_id !== undefined) a.class_id = change.class_id;
  } else {
    const i = Number(key.slice(2));
    if (i >= rv.record.detections.length) return;
    const d = { ...decisionOf(i) };
    if (change.undecided) delete rv.review.detections[String(i)];
    else {
      if (change.deleted) d.status = "rejected";
      if (change.status) d.status = change.status;
      if (change.class_id !== undefined) { d.class_id = change.class_id; d.status = d.status || "accepted"; }
      if (d.class_id === rv.record.detections[i].class_id) delete d.class_id;
      rv.review.detections[String(i)] = d;
    }
  }
  rv.selected = key;
  renderReview();
  await saveReview();
}

function plain(entry) {  // a decision or added object as sent: without the page's decoded mask
  const { _mask, ...rest } = entry;
  return rest;
}

async function saveReview() {
  const file = rv.record.image;
  const body = { revision: rv.review.revision, by: $("rv-by").value.trim() || "anonymous", reviewed: rv.review.reviewed,
                 detections: Object.fromEntries(Object.entries(rv.review.detections).map(([k, d]) => [k, plain(d)])),
                 added: rv.review.added.map(plain) };
  try {
    const saved = await api(`/v1/run/review?file=${encodeURIComponent(file)}`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (rv.record && rv.record.image === file) rv.review = asReview(saved);
    const entry = rv.images[rv.current];
    if (entry && entry.file === file) { entry.reviewed = saved.reviewed; entry.decisions = Object.keys(saved.detections).length; }
    showMessage("rv-message", `saved revision ${saved.revision}: ${Object.keys(saved.detections).length} decision(s), ` +
                `${saved.added.length} added${saved.reviewed ? ", reviewed" : ""}`);
    document.body.dataset.saved = String(Number(document.body.dataset.saved || 0) + 1);
    await applyFilters();
  } catch (err) {
    if (err.status === 409 && err.body && err.body.current && rv.record && rv.record.image === file) {
      rv.review = asReview(err.body.current);  // someone else's save won: show it, never overwrite it
      document.body.dataset.conflicts = String(Number(document.body.dataset.conflicts || 0) + 1);
      showMessage("rv-message", `not saved: ${err.message}. Showing their version.`, true);
      renderReview();
    } else {
      showMessage("rv-message", `not saved: ${err.message}`, true);
    }
  }
}

async function setReviewed(value) {
  if (!rv.record || rv.record.error) return;
  remember();
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
  if (onEditKey(ev)) { ev.preventDefault(); return; }  // edit.js: tools, drafts, undo / redo
  const keys = objects().map((o) => o.key);
  const n = keys.length, at = Math.max(0, keys.indexOf(rv.selected));
  const key = ev.key;
  if (key === "j" || key === "ArrowRight") step(1);
  else if (key === "k" || key === "ArrowLeft") step(-1);
  else if (key === "ArrowDown" && n) { rv.selected = keys[(at + 1) % n]; renderReview(); }
  else if (key === "ArrowUp" && n) { rv.selected = keys[(at + n - 1) % n]; renderReview(); }
  else if (key === "a" && n) decide(rv.selected, { status: "accepted" });
  else if ((key === "r" || key === "x") && n) decide(rv.selected, { status: "rejected" });
  else if ((key === "Delete" || key === "Backspace") && n) decide(rv.selected, { deleted: true });
  else if (key === "u" && n && rv.selected.startsWith("d:")) decide(rv.selected, { undecided: true });
  else if (/^[1-9]$/.test(key) && n && Number(key) <= rv.run.classes.length) decide(rv.selected, { class_id: Number(key) - 1 });
  else if (key === "Enter") { setReviewed(true).then(() => step(1)); }
  else return;
  ev.preventDefault();
}
