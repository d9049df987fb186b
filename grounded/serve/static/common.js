// grounded serve, the page: shared helpers (requests, COCO RLE masks, drawing). Plain JavaScript, no build step.
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
    if (!response.ok) {
      const err = new Error(body && body.detail ? body.detail : `${response.status} ${response.statusText}`);
      err.status = response.status; err.body = body;  // e.g. 409: body.current, the state someone else saved
      throw err;
    }
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

// Uint8Array(h * w) row-major -> COCO RLE with uncompressed counts (column-major runs, starting with 0s).
function encodeMask(mask, h, w) {
  const counts = [];
  let value = 0, run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = mask[y * w + x] ? 1 : 0;
      if (v !== value) { counts.push(run); run = 0; value = v; }
      run++;
    }
  }
  counts.push(run);
  return { size: [h, w], counts };
}

// [x0, y0, x1, y1] around the mask's pixels (null when empty).
function maskBox(mask, h, w) {
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
  }
  return x1 < 0 ? null : [x0, y0, x1 + 1, y1 + 1];
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
