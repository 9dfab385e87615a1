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
      if (canReview) refreshQueue();
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

async function fetchQueue() {
  const { body } = await api(`/api/review-queue/?${queueQuery()}`);
  queue = body.results;
  return body;
}

async function loadQueue(preferred = null) {
  const body = await fetchQueue();
  let waiting = queue.filter((scan) => !skipped.has(scan.id));
  if (waiting.length === 0 && queue.length > 0) {
    skipped.clear(); // every waiting scan was skipped: start the round again
    waiting = queue;
  }
  const next = queue.find((scan) => scan.id === preferred) || waiting[0] || null;
  // The next scan's slice and evidence map, asked for now, are ready by the time it shows.
  const after = waiting.find((scan) => next && scan.id !== next.id);
  if (after) {
    sliceImage(after.id, "soft_tissue");
    fetch(heatmapUrl(after.id), background);
  }
  await show(next);
  showProgress(body);
  drawQueueList();
}

// The list and the counts again, the scan on screen kept (an upload joined the queue).
async function refreshQueue() {
  if (current === null && !loading) return loadQueue();
  showProgress(await fetchQueue());
  drawQueueList();
}

function showProgress(body) {
  $("progress").textContent = `${body.reviewed_today} reviewed today, ${body.count} waiting`;
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
    item.addEventListener("click", async () => {
      await show(scan);
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
  const passed = current || unshown;
  if (passed !== null) skipped.add(passed.id);
  $("review-status").textContent = "";
  loadQueue();
}

// A scan goes on screen in one step: its slice is fetched and decoded first, then drawn with
// its label and numbers, so a reader never sees one scan's slice under another's label. Keys
// wait meanwhile (current is null): a confirm always names the slice on screen.
let showing = 0;
let loading = false; // a scan's slice is on its way to the screen
let unshown = null; // a scan whose slice could not be loaded
async function show(scan) {
  const request = ++showing;
  if (scan === null) {
    current = null;
    $("current").hidden = true;
    $("details").hidden = true;
    $("queue-empty").hidden = false;
    return;
  }
  const shownBefore = current;
  current = null;
  unshown = null;
  loading = true;
  let image;
  try {
    image = await sliceImage(scan.id, "soft_tissue");
  } catch {
    if (request === showing) {
      loading = false;
      unshown = scan; // never reviewed unseen; n passes over it
      $("review-status").textContent = `Scan ${scan.id}'s slice could not be loaded; n moves on.`;
    }
    return;
  }
  if (request !== showing) return; // another scan was asked for meanwhile
  loading = false;
  if (shownBefore === null || shownBefore.id !== scan.id) $("review-status").textContent = "";
  drawNewSlice(scan, image, "soft_tissue");
  current = scan;
  $("current").hidden = false;
  $("details").hidden = false;
  $("queue-empty").hidden = true;
  const p = scan.prediction;
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
  $("dicom-presets").hidden = !isDicom(scan);
  showSameImageReviews(scan);
  loadHeatmap(scan.id);
  loadAudit(scan.id);
}

// Other scans of the same image (the same bytes, uploaded again) and how they were confirmed:
// a contradiction is never trained on, and the reader should see it.
function showSameImageReviews(scan) {
  const others = scan.same_image_reviews || [];
  $("same-image").hidden = others.length === 0;
  $("same-image").textContent = others
    .map((other) => `The same image is also scan ${other.scan}, confirmed ${other.label}` +
      ` by ${other.reviewer || "someone"} on ${other.confirmed_at.slice(0, 10)}.`)
    .join(" ");
  const labels = new Set(others.map((other) => other.label));
  if (labels.size > 1 || (scan.confirmed_label && others.some((o) => o.label !== scan.confirmed_label))) {
    $("same-image").textContent += " These labels contradict each other: none of them is trained on until they agree.";
  }
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

// The slice: window/level on the displayed pixels, zoom about the cursor, pan, DICOM presets.
// A DICOM slice arrives through a CT window (soft tissue or bone); its display values map
// back to Hounsfield units, so the reader's window and level are shown in HU.

const windows = JSON.parse($("ct-windows").textContent);
const DISPLAY = { width: 255, level: 127.5 }; // the slice exactly as served
const view = { ...DISPLAY, zoom: 1, x: 0, y: 0, pixels: null, preset: "soft_tissue", scan: null };
const isDicom = (scan) => scan.content_type === "application/dicom";
const sliceUrl = (scanId, preset) => `/api/scans/${scanId}/image/?window=${preset}`;
const slices = new Map(); // url -> Promise of a decoded image: the next scan's is fetched early

function sliceImage(scanId, preset) {
  const url = sliceUrl(scanId, preset);
  if (!slices.has(url)) {
    const image = new Image();
    image.src = url;
    slices.set(url, image.decode().then(() => image));
    slices.get(url).catch(() => slices.delete(url));
    while (slices.size > 8) slices.delete(slices.keys().next().value);
  }
  return slices.get(url);
}

function drawNewSlice(scan, image, preset) {
  const canvas = $("scan-canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  view.pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  view.preset = preset;
  view.scan = scan;
  canvas.dataset.scan = scan.id;
  clampPan(); // window, level and zoom carry over to the next slice, as in a PACS viewer
  drawSlice();
}

async function choosePreset(preset) {
  if (current === null) return;
  const scan = current;
  const image = await sliceImage(scan.id, preset);
  if (current !== null && current.id === scan.id) {
    Object.assign(view, DISPLAY);
    drawNewSlice(scan, image, preset);
  }
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
  $("zoom").style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  $("window-level").textContent = `${windowText()}, zoom ${view.zoom.toFixed(1)}×`;
  for (const [preset, button] of [["soft_tissue", "preset-soft"], ["bone", "preset-bone"]]) {
    $(button).setAttribute("aria-pressed", String(view.preset === preset));
  }
}

function windowText() {
  if (view.scan === null || !isDicom(view.scan)) {
    return `Window ${Math.round(view.width)}, level ${Math.round(view.level)} (of 0–255 displayed)`;
  }
  const ct = windows[view.preset];
  const perValue = ct.width / 255;
  const width = view.width * perValue;
  const level = ct.level - ct.width / 2 + view.level * perValue;
  return `Window ${Math.round(width)} HU, level ${Math.round(level)} HU (${ct.name} preset)`;
}

function resetView() {
  Object.assign(view, DISPLAY, { zoom: 1, x: 0, y: 0 });
  drawSlice();
}

// The image fills the viewer at zoom 1; panned, it never leaves a gap at an edge.
function clampPan() {
  const box = $("viewer").getBoundingClientRect();
  const content = $("scan-canvas").offsetHeight;
  view.x = Math.min(0, Math.max(box.width * (1 - view.zoom), view.x));
  view.y = Math.min(0, Math.max(Math.min(box.height, content) - content * view.zoom, view.y));
}

// Dragging sets window (sideways) and level (up and down); with Shift or the middle button it
// pans. The drag ends on release wherever the pointer is, and on anything that cancels it.
let drag = null;
function endDrag() {
  drag = null;
}

// Only a radiologist's page has the viewer.
function setUpViewer() {
  $("viewer").addEventListener("pointerdown", (event) => {
    if (event.button !== 0 && event.button !== 1) return;
    event.preventDefault(); // no text selection, no native image drag
    const pan = event.shiftKey || event.button === 1;
    drag = { pan, fromX: event.clientX, fromY: event.clientY, x0: view.x, y0: view.y,
             width: view.width, level: view.level };
    $("viewer").setPointerCapture(event.pointerId);
  });
  $("viewer").addEventListener("pointermove", (event) => {
    if (drag === null) return;
    if (event.buttons === 0) return endDrag(); // the release happened where we could not see it
    const dx = event.clientX - drag.fromX;
    const dy = event.clientY - drag.fromY;
    if (drag.pan) {
      view.x = drag.x0 + dx;
      view.y = drag.y0 + dy;
      clampPan();
    } else {
      view.width = Math.max(1, drag.width + dx);
      view.level = drag.level - dy;
    }
    drawSlice();
  });
  for (const ending of ["pointerup", "pointercancel", "lostpointercapture"]) {
    $("viewer").addEventListener(ending, endDrag);
  }
  $("viewer").addEventListener("dragstart", (event) => event.preventDefault());
  $("viewer").addEventListener(
    "wheel",
    (event) => {
      if (event.deltaY > 0 && view.zoom === 1) return; // nothing to zoom out of: the page scrolls
      event.preventDefault();
      const box = $("viewer").getBoundingClientRect();
      const pointer = { x: event.clientX - box.left, y: event.clientY - box.top };
      const zoom = Math.min(8, Math.max(1, view.zoom * (event.deltaY < 0 ? 1.25 : 0.8)));
      // The point under the cursor stays under it.
      view.x = pointer.x - ((pointer.x - view.x) * zoom) / view.zoom;
      view.y = pointer.y - ((pointer.y - view.y) * zoom) / view.zoom;
      view.zoom = zoom;
      clampPan();
      drawSlice();
    },
    { passive: false },
  );
  $("preset-soft").addEventListener("click", () => choosePreset("soft_tissue"));
  $("preset-bone").addEventListener("click", () => choosePreset("bone"));
  $("heatmap-opacity").addEventListener("input", () => {
    $("scan-heatmap").style.opacity = $("heatmap-opacity").value / 100;
  });
}

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
          ? `Evidence map (${method}): the method found no localised evidence in this slice, so the overlay is empty. This says nothing about the score, only that no one region carries it.`
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
  if (status === 409 && body.review_version !== undefined) {
    // Reviewed meanwhile (another tab, another reader): show the scan as it is now.
    await loadQueue(scan.id);
    const again = current !== null && current.id === scan.id;
    $("review-status").textContent =
      `Not saved: this scan was reviewed meanwhile, in another tab or by another reader. ` +
      (again ? "It is shown again as it is now: review it again." : "It has left the queue; this is the next scan.");
    return;
  }
  if (status !== 200) {
    $("review-status").textContent = `Not saved: ${errorText(body)}`;
    return;
  }
  lastReview = { scan, version: scan.review_version + 1 };
  $("undo").disabled = false;
  await loadQueue();
  let saved = `Saved: ${label} for the previous scan (u undoes it).`;
  const contradicted = (body.same_image_reviews || []).filter((other) => other.label !== label);
  if (contradicted.length > 0) {
    saved += ` It contradicts ${contradicted.map((o) => `scan ${o.scan} (${o.label})`).join(", ")}, ` +
      "the same image: neither is trained on until they agree.";
  }
  $("review-status").textContent = saved;
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
  $("note").addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("note").blur(); // back to the keys
  });
  document.addEventListener("keydown", (event) => {
    // Keys are commands unless the reader is typing (a note, a date, a choice).
    if (event.target.matches("input[type=text], input[type=date], select, textarea")) return;
    if (event.key === "u") return undo();
    if (event.key === "n") return skip();
    if (current === null) return;
    const index = Number.parseInt(event.key, 10);
    if (event.key === "c") review(current.prediction.label);
    else if (index >= 1 && index <= classes.length) review(classes[index - 1]);
    else if (event.key === "h") $("scan-heatmap").hidden = !$("scan-heatmap").hidden;
    else if (event.key === "r") resetView();
  });
  setUpViewer();
  loadVersions();
  loadQueue();
}
