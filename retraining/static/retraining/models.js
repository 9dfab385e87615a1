// The ML engineers' page: model versions and training runs, read from the REST API; runs in
// progress are polled every two seconds.
"use strict";

const $ = (id) => document.getElementById(id);
const fixed = (value) => (value === null || value === undefined ? "–" : value.toFixed(3));
// Fewer images of a class than this and a set's numbers say nothing (the gate's own rule).
const minimumPerClass = Number($("versions").dataset.minimumPerClass);
let startedRun = null; // the run this page started: its status follows it

async function api(path, options = {}) {
  const headers = { "X-CSRFToken": window.CSRF_TOKEN, Accept: "application/json" };
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  return { status: response.status, body: await response.json() };
}

function cells(row, values) {
  for (const value of values) row.insertCell().textContent = value;
}

// The set a version was judged on: the original evaluation set, else the held-out block it
// shipped with, else its validation block; with its counts, and no numbers where they are
// too few to judge.
function judged(metrics) {
  for (const [key, name] of [["evaluation", "evaluation set"], ["held_out", "held-out studies"],
                             ["validation", "validation block"]]) {
    const report = metrics[key];
    if (!report) continue;
    const counts = typeof report.n === "object" && report.n !== null ? report.n : {};
    const described = Object.entries(counts).sort().map(([label, n]) => `${n} ${label}`).join(", ");
    const few = Object.values(counts).some((n) => n < minimumPerClass);
    if (few) {
      return [`${name} (${described}): too few to judge, ${minimumPerClass} of each class needed`, {}];
    }
    return [described ? `${name} (${described})` : name, report];
  }
  return ["–", {}];
}

function decisionText(decision) {
  if (decision.decision === "not_judged") return `${decision.action}: ${decision.gate.detail}`;
  return `${decision.action}: ${decision.decision}${decision.reason ? ` (${decision.reason})` : ""}`;
}

async function loadVersions() {
  const { body } = await api("/api/models/");
  $("version-rows").innerHTML = "";
  for (const version of body.results.slice(0, 20)) {
    const detail = (await api(`/api/models/${version.id}/`)).body;
    const [setName, report] = judged(version.metrics);
    const agreement = detail.agreement;
    const decision = detail.decisions[0];
    const row = $("version-rows").insertRow();
    row.id = `version-${version.version}`;
    cells(row, [
      `v${version.version}`, version.status, fixed(version.threshold), setName,
      fixed(report.sensitivity), fixed(report.specificity), fixed(report.auc),
      agreement.n ? `${agreement.n} labels: sens. ${fixed(agreement.sensitivity)}, spec. ${fixed(agreement.specificity)}` : "no confirmed labels yet",
      decision ? decisionText(decision) : (version.metrics.gate ? version.metrics.gate.detail : "–"),
    ]);
  }
}

async function loadRuns() {
  const { body } = await api("/api/training-runs/");
  $("run-rows").innerHTML = "";
  let active = false;
  for (const run of body.results.slice(0, 20)) {
    active ||= run.status === "queued" || run.status === "running";
    const last = run.history[run.history.length - 1];
    const row = $("run-rows").insertRow();
    row.id = `run-${run.id}`;
    if (run.id === startedRun) {
      const outcome = run.model_version ? `: candidate v${run.model_version}` : "";
      $("start-status").textContent = `Run ${run.id} ${run.status}${run.error ? `: ${run.error}` : outcome}.`;
    }
    cells(row, [
      run.id, run.status + (run.error ? `: ${run.error}` : ""), run.trigger,
      `${Math.round(100 * run.progress)} %`, run.epoch, last ? fixed(last.val_auc) : "–",
      run.model_version ? `v${run.model_version}` : (run.metrics.gate ? run.metrics.gate.detail : "–"),
      run.started ? run.started.slice(0, 19).replace("T", " ") : "–",
    ]);
  }
  if (active) setTimeout(refresh, 2000);
}

async function loadTrigger() {
  const { body } = await api("/api/training-runs/trigger/");
  $("trigger-status").textContent = body.ready
    ? "The next scheduled check starts a run."
    : `The next run waits for ${body.waiting_for.join("; ")}.`;
  $("refusal-alert").hidden = !body.refusal_alert;
  $("refusal-alert").textContent = body.refusal_alert;
}

async function refresh() {
  await Promise.all([loadVersions(), loadRuns(), loadTrigger()]);
}

$("start-run").addEventListener("click", async () => {
  const { status, body } = await api("/api/training-runs/", { method: "POST", body: "{}" });
  if (status === 202) {
    startedRun = body.id;
    $("start-status").textContent = `Run ${body.id} queued.`;
  } else {
    $("start-status").textContent = body.detail || JSON.stringify(body);
  }
  refresh();
});

refresh();
