// The review page: upload and watch a scan get classified; work through the review queue.
// It only talks to the REST API, with the session cookie and the CSRF token.
"use strict";

const app = document.getElementById("app");
const classes = app.dataset.classes.split(",");
const canReview = app.dataset.canReview === "1";
const $ = (id) => document.getElementById(id);
let current = null; // the queue item on screen
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
  if (body.detail) return body.detail;
  return Object.entries(body)
    .map(([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`)
    .join("; ");
}

async function loadQueue() {
  const { body } = await api("/api/review-queue/");
  $("queue-count").textContent = `(${body.count} waiting)`;
  let waiting = body.results.filter((scan) => !skipped.has(scan.id));
  if (waiting.length === 0 && body.results.length > 0) {
    skipped.clear(); // every waiting scan was skipped: start the round again
    waiting = body.results;
  }
  show(waiting[0] || null);
  // The next scan's heatmap, asked for now, is ready by the time it is shown.
  if (waiting[1]) fetch(heatmapUrl(waiting[1].id), { credentials: "same-origin" });
}

const heatmapUrl = (scanId) => `/api/scans/${scanId}/heatmap.png`;

// The slice shows at once; its overlay follows when the worker has computed it (202 until
// then), without holding up the review.
async function loadHeatmap(scanId) {
  $("scan-heatmap").removeAttribute("src");
  for (let attempt = 0; attempt < 60 && current && current.id === scanId; attempt += 1) {
    const response = await fetch(heatmapUrl(scanId), { credentials: "same-origin" });
    if (!current || current.id !== scanId) return;
    if (response.status === 200) {
      $("scan-heatmap").src = URL.createObjectURL(await response.blob());
      $("heatmap-note").textContent =
        response.headers.get("X-Heatmap-Signal") === "none"
          ? "The heatmap has no signal: nothing in this slice raised P(abnormal), so the overlay is empty."
          : "";
      return;
    }
    if (response.status !== 202) break;
    $("heatmap-note").textContent = "Heatmap being computed…";
    await sleep(1000);
  }
  if (current && current.id === scanId) $("heatmap-note").textContent = "No heatmap yet.";
}

function skip() {
  if (current !== null) skipped.add(current.id);
  loadQueue();
}

function show(scan) {
  current = scan;
  $("current").hidden = scan === null;
  $("queue-empty").hidden = scan !== null;
  if (scan === null) return;
  const p = scan.prediction;
  $("scan-image").src = `/api/scans/${scan.id}/image/`;
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
  $("review-status").textContent = "";
  loadAudit(scan.id);
}

async function loadAudit(scanId) {
  const { body } = await api(`/api/scans/${scanId}/reviews/`);
  $("audit").innerHTML = "";
  for (const item of body) {
    const entry = document.createElement("li");
    entry.textContent =
      `${item.created.slice(0, 19).replace("T", " ")} ${item.reviewer}: ` +
      `${item.old_label || "unreviewed"} → ${item.new_label}` +
      `${item.note ? ` (“${item.note}”)` : ""}; model said ${item.model_label}`;
    $("audit").appendChild(entry);
  }
}

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
  await loadQueue();
  $("review-status").textContent = `Saved: ${label} for the previous scan.`;
}

if (canReview) {
  $("confirm").addEventListener("click", () => review(current.prediction.label));
  for (const button of document.querySelectorAll(".relabel")) {
    button.addEventListener("click", () => review(button.dataset.label));
  }
  $("next").addEventListener("click", skip);
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || current === null) return;
    const index = Number.parseInt(event.key, 10);
    if (event.key === "c") review(current.prediction.label);
    else if (index >= 1 && index <= classes.length) review(classes[index - 1]);
    else if (event.key === "h") $("scan-heatmap").hidden = !$("scan-heatmap").hidden;
    else if (event.key === "n") skip();
  });
  loadQueue();
}
