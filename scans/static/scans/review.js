// The review page: upload and watch a scan get classified; work through the review queue,
// keyboard first. It only talks to the REST API, with the session cookie and the CSRF token.
"use strict";

const app = document.getElementById("app");
const classes = app.dataset.classes.split(",");
const canReview = app.dataset.canReview === "1";
const $ = (id) => document.getElementById(id);
let current = null; // the queue item on screen
let queue = []; // the waiting scans as last listed, in queue order
let lastReview = null; // {scan, version}: what `u` undoes
const skipped = new Set(); // scans passed over with Next, shown again once the rest are done

async function api(path, { json, ...options } = {}) {
  const headers = { "X-CSRFToken": window.CSRF_TOKEN, Accept: "application/json" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  }
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  const body = response.status === 204 ? null : await response.json();
  return { status: response.status, body };
}

const percent = (value) => `${(100 * value).toFixed(1)} %`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("file", $("upload-file").files[0]);
  $("upload-status").textContent = "Uploading…";
  const { status, body } = await api("/api/scans/", { method: "POST", body: form });
  if (status !== 202 && status !== 200) {
    $("upload-status").textContent = `Refused: ${errorText(body)}`;
    return;
  }
  // 200: the same file was uploaded before; that scan is shown, not classified again.
  const already = status === 200 ? "Already uploaded. " : "";
  const url = `/api/scans/${body.id}/`;
  for (let attempt = 0; attempt < 120; attempt += 1) {
    const scan = (await api(url)).body;
    $("upload-status").textContent = `${already}Scan ${scan.id}: ${scan.status}`;
    if (scan.status === "predicted") {
      const p = scan.prediction;
      $("upload-status").textContent =
        `${already}Scan ${scan.id}: predicted ${p.label} ` +
        `(P(abnormal) ${percent(p.abnormal_score)}, ` +
        `model v${p.model_version}, threshold ${p.threshold.toFixed(3)})`;
      if (canReview && current === null) loadQueue();
      return;
    }
    if (scan.status === "failed") {
      $("upload-status").textContent = `Scan ${scan.id}: failed: ${scan.error}`;
      return;
    }
    await sleep(500);
  }
});

// A refusal's message for people: DRF's `detail`, or each field's messages.
function errorText(body) {
  if (body === null || typeof body !== "object") return "the server refused the request.";
  if (body.detail) return [].concat(body.detail).join(" ");
  return Object.entries(body)
    .map(([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`)
    .join("; ");
}

// The queue ------------------------------------------------------------------------------

function queueQuery() {
  const params = new URLSearchParams();
  if ($("filter-flagged").checked) params.set("positive", "true");
  if ($("filter-version").value) params.set("model_version", $("filter-version").value);
  if ($("filter-since").value) params.set("since", $("filter-since").value);
  return params.toString();
}

async function loadQueue(preferred = null) {
  const { body } = await api(`/api/review-queue/?${queueQuery()}`);
  queue = body.results;
  $("progress").textContent = `${body.reviewed_today} reviewed today, ${body.count} waiting`;
  let waiting = queue.filter((scan) => !skipped.has(scan.id));
  if (waiting.length === 0 && queue.length > 0) {
    skipped.clear(); // every waiting scan was skipped: start the round again
    waiting = queue;
  }
  const next = queue.find((scan) => scan.id === preferred) || waiting[0] || null;
  show(next);
  drawQueueList();
  // The next scan's heatmap, asked for now, is ready by the time it is shown.
  const after = waiting.find((scan) => next && scan.id !== next.id);
  if (after) fetch(heatmapUrl(after.id), background);
}

function drawQueueList() {
  $("queue-list").innerHTML = "";
  for (const scan of queue) {
    const item = document.createElement("li");
    item.dataset.scan = scan.id;
    item.className = current && current.id === scan.id ? "current" : "";
    const thumbnail = document.createElement("img");
    thumbnail.loading = "lazy";
    thumbnail.alt = "";
    thumbnail.src = `/api/scans/${scan.id}/image/`;
    const text = document.createElement("span");
    text.textContent = `${scan.prediction.label} ${percent(scan.prediction.abnormal_score)}`;
    if (scan.positive) text.className = "positive";
    item.append(thumbnail, text);
    item.addEventListener("click", () => {
      show(scan);
      drawQueueList();
    });
    $("queue-list").appendChild(item);
  }
}

async function loadVersions() {
  const { body } = await api("/api/models/");
  for (const version of body.results) {
    const option = document.createElement("option");
    option.value = version.version;
    option.textContent = `v${version.version} (${version.status})`;
    $("filter-version").appendChild(option);
  }
}

function skip() {
  if (current !== null) skipped.add(current.id);
  loadQueue();
}

function show(scan) {
  current = scan;
  $("current").hidden = scan === null;
  $("details").hidden = scan === null;
  $("queue-empty").hidden = scan !== null;
  if (scan === null) return;
  const p = scan.prediction;
  loadSlice(scan, "soft_tissue");
  loadHeatmap(scan.id);
  $("model-label").textContent = `Model: ${p.label}`;
  $("flag").textContent = scan.positive ? "flagged abnormal" : "";
  $("flag").className = scan.positive ? "positive" : "";
  $("probabilities").innerHTML = "";
  for (const [name, value] of Object.entries(p.probabilities)) {
    const row = $("probabilities").insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = percent(value);
  }
  $("model-meta").textContent =
    `Model v${p.model_version}, threshold ${p.threshold.toFixed(3)} on P(abnormal) ` +
    `${percent(p.abnormal_score)}`;
  $("note").value = "";
  $("dicom-presets").hidden = scan.content_type !== "application/dicom";
  loadAudit(scan.id);
}

async function loadAudit(scanId) {
  const { body } = await api(`/api/scans/${scanId}/reviews/`);
  $("audit").innerHTML = "";
  for (const item of body) {
    const entry = document.createElement("li");
    entry.textContent =
      `${item.created.slice(0, 19).replace("T", " ")} ${item.reviewer}: ` +
      `${item.old_label || "unreviewed"} → ${item.new_label || "unreviewed"}` +
      `${item.note ? ` (“${item.note}”)` : ""}; model said ${item.model_label}`;
    $("audit").appendChild(entry);
  }
}

// The slice: window/level on the displayed pixels, zoom, DICOM presets --------------------

const view = { width: 256, level: 128, zoom: 1, pixels: null };

function loadSlice(scan, preset) {
  const image = $("scan-image");
  image.onload = () => {
    const canvas = $("scan-canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    view.pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    drawSlice();
  };
  image.src = `/api/scans/${scan.id}/image/?window=${preset}`;
}

function drawSlice() {
  if (view.pixels === null) return;
  const low = view.level - view.width / 2;
  const table = new Uint8ClampedArray(256);
  for (let value = 0; value < 256; value += 1) {
    table[value] = ((value - low) / view.width) * 255;
  }
  const source = view.pixels.data;
  const shown = new ImageData(view.pixels.width, view.pixels.height);
  for (let index = 0; index < source.length; index += 4) {
    shown.data[index] = table[source[index]];
    shown.data[index + 1] = table[source[index + 1]];
    shown.data[index + 2] = table[source[index + 2]];
    shown.data[index + 3] = 255;
  }
  $("scan-canvas").getContext("2d").putImageData(shown, 0, 0);
  $("zoom").style.transform = `scale(${view.zoom})`;
  $("window-level").textContent =
    `Window ${Math.round(view.width)}, level ${Math.round(view.level)} (of 0–255 displayed), ` +
    `zoom ${view.zoom.toFixed(1)}×`;
}

function resetView() {
  Object.assign(view, { width: 256, level: 128, zoom: 1 });
  drawSlice();
}

let drag = null;
$("viewer").addEventListener("pointerdown", (event) => {
  drag = { x: event.clientX, y: event.clientY, width: view.width, level: view.level };
  $("viewer").setPointerCapture(event.pointerId);
});
$("viewer").addEventListener("pointermove", (event) => {
  if (drag === null) return;
  view.width = Math.max(1, drag.width + (event.clientX - drag.x));
  view.level = drag.level - (event.clientY - drag.y);
  drawSlice();
});
$("viewer").addEventListener("pointerup", () => {
  drag = null;
});
$("viewer").addEventListener(
  "wheel",
  (event) => {
    event.preventDefault();
    view.zoom = Math.min(8, Math.max(1, view.zoom * (event.deltaY < 0 ? 1.25 : 0.8)));
    drawSlice();
  },
  { passive: false },
);
$("preset-soft").addEventListener("click", () => current && loadSlice(current, "soft_tissue"));
$("preset-bone").addEventListener("click", () => current && loadSlice(current, "bone"));
$("heatmap-opacity").addEventListener("input", () => {
  $("scan-heatmap").style.opacity = $("heatmap-opacity").value / 100;
});

// The evidence map: the slice shows at once; its overlay follows when the worker has
// computed it (202 until then: occlusion takes hundreds of forward passes), without holding
// up the review.
const heatmapUrl = (scanId) => `/api/scans/${scanId}/heatmap.png`;
// The page's own polling: it neither restarts the idle time nor counts as activity.
const background = { credentials: "same-origin", headers: { "X-Background": "1" } };

async function loadHeatmap(scanId) {
  $("scan-heatmap").removeAttribute("src");
  $("heatmap-note").textContent = "";
  for (let attempt = 0; attempt < 120 && current && current.id === scanId; attempt += 1) {
    const response = await fetch(heatmapUrl(scanId), background);
    if (!current || current.id !== scanId) return;
    if (response.status === 200) {
      $("scan-heatmap").src = URL.createObjectURL(await response.blob());
      const method = response.headers.get("X-Heatmap-Method");
      $("heatmap-note").textContent =
        response.headers.get("X-Heatmap-Signal") === "none"
          ? `Evidence map (${method}) has no signal: no region of this slice carries its P(abnormal), so the overlay is empty.`
          : `Evidence map (${method}): where the model's evidence lies, not an outline of a finding.`;
      return;
    }
    if (response.status !== 202) break;
    $("heatmap-note").textContent = "Evidence map being computed…";
    await sleep(1000);
  }
  if (current && current.id === scanId) $("heatmap-note").textContent = "No evidence map yet.";
}

// Reviews --------------------------------------------------------------------------------

async function review(label) {
  if (current === null) return;
  const scan = current;
  const { status, body } = await api(`/api/scans/${scan.id}/review/`, {
    method: "POST",
    json: { label, note: $("note").value, version: scan.review_version },
  });
  if (status === 401) {
    $("review-status").textContent =
      `Not saved: your session has ended. Log in again and review this scan again (${label}).`;
    return;
  }
  if (status !== 200) {
    $("review-status").textContent = `Not saved: ${errorText(body)}`;
    return;
  }
  lastReview = { scan, version: scan.review_version + 1 };
  $("undo").disabled = false;
  await loadQueue();
  $("review-status").textContent = `Saved: ${label} for the previous scan (u undoes it).`;
}

async function undo() {
  if (lastReview === null) return;
  const { scan, version } = lastReview;
  const { status, body } = await api(`/api/scans/${scan.id}/undo-review/`, {
    method: "POST",
    json: { version },
  });
  if (status !== 200) {
    $("review-status").textContent = `Not undone: ${errorText(body)}`;
    return;
  }
  lastReview = null;
  $("undo").disabled = true;
  skipped.delete(scan.id);
  await loadQueue(scan.id);
  $("review-status").textContent =
    `Undone: the scan is ${body.new_label || "unreviewed"} again (a new event in its trail).`;
}

if (canReview) {
  $("confirm").addEventListener("click", () => review(current.prediction.label));
  for (const button of document.querySelectorAll(".relabel")) {
    button.addEventListener("click", () => review(button.dataset.label));
  }
  $("next").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  for (const filter of ["filter-flagged", "filter-version", "filter-since"]) {
    $(filter).addEventListener("change", () => loadQueue());
  }
  document.addEventListener("keydown", (event) => {
    // Keys are commands unless the reader is typing (a note, a date, a choice).
    if (event.target.matches("input[type=text], input[type=date], select, textarea")) return;
    if (event.key === "u") return undo();
    if (current === null) return;
    const index = Number.parseInt(event.key, 10);
    if (event.key === "c") review(current.prediction.label);
    else if (index >= 1 && index <= classes.length) review(classes[index - 1]);
    else if (event.key === "h") $("scan-heatmap").hidden = !$("scan-heatmap").hidden;
    else if (event.key === "n") skip();
    else if (event.key === "r") resetView();
  });
  loadVersions();
  loadQueue();
}
