"""Prospective replay: does the learning loop make the predictions on the next patients better?

A stream of labelled CT slices (a folder of class subfolders; file numbers follow acquisition
order) goes through the real service in acquisition order, in chunks: uploaded over REST,
classified by the inference worker, then reviewed over the review API by a simulated
radiologist who confirms the true label, in review-queue order, up to --review-budget of each
chunk. Retraining happens as in production: beat's trigger starts a run after
--retrain-every new labels once they can fill each block of a run, the training worker runs
it, the gate decides. After each review the replay asks the trigger
(GET /api/training-runs/trigger/) whether beat would start a run on the labels as they are
now, and if so waits for that run to end before the next review: every run starts at the
same label count whatever the machine's speed or load. Each prediction is scored as it was
made, by the version that served at that moment. --frozen replays with retraining off;
--compare runs both from the same initial model.

    .venv/bin/python bench/replay.py --initial DEV_FIRST_60 --stream DEV_LAST_40 --compare

The stack: gunicorn, an inference worker, a training worker, beat, a private Redis, and
PostgreSQL databases named after --database-url (dropped and created afresh: never one you
keep data in). The initial state (database and data folder, with the initial model serving)
is prepared once in --work and cloned for each replay; --initial-version N reuses a prepared
--work and starts from its version N instead; --initial-shipped starts from what a fresh
install serves (`bootstrap_model`: the model shipped with the code). The last line is one
JSON object: {"retraining": R, "frozen": F} (the keys that ran).
"""

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psycopg
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.stack import isolated_environment, manage  # noqa: E402
from ml_core.datasets import images_in_acquisition_order  # noqa: E402
from ml_core.decision import NEGATIVE_CLASS, binary_report, choose_threshold, roc_auc  # noqa: E402
from tests.processes import Processes, free_port, wait_until  # noqa: E402

USERS = {"clinician": "replay-clinician", "radiologist": "replay-radiologist",
         "ml_engineer": "replay-engineer"}  # fmt: skip
INITIAL_OVERRIDE = "replay: the initial model serves whatever the gate says"
BEAT_SECONDS = 3


@dataclass(frozen=True)
class StreamItem:
    path: Path
    label: str


@dataclass
class Scored:
    """One scan as it was predicted: the truth, P(abnormal), the decision, the version."""

    label: str
    abnormal_score: float
    decided_abnormal: bool
    model_version: int


@dataclass
class Replay:
    mode: str
    chunks: list[dict] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)
    training_runs: list[dict] = field(default_factory=list)
    promotions: int = 0
    rejections: int = 0


def stream_in_acquisition_order(root: Path, classes: list[str]) -> list[StreamItem]:
    """Every class's images in file-number order, interleaved by relative position."""
    keyed = []
    for label in classes:
        files = images_in_acquisition_order(root / label)
        keyed += [((index + 0.5) / len(files), label, path) for index, path in enumerate(files)]
    return [StreamItem(path, label) for _, label, path in sorted(keyed)]


OPERATING_SENSITIVITY = 0.95


def score(scored: list[Scored]) -> dict:
    """n, ROC AUC, sensitivity and specificity at the served thresholds, and the specificity
    the ranking allows at sensitivity >= 0.95 on this block (its ROC operating point: what
    a threshold set on these very scans would give, so an upper bound for a served one)."""
    if not scored:
        return {"n": 0, "auc": None, "sensitivity": None, "specificity": None,
                "specificity_at_sensitivity_95": None}  # fmt: skip
    positive = np.array([item.label != NEGATIVE_CLASS for item in scored])
    decided = np.array([item.decided_abnormal for item in scored])
    scores = np.array([item.abnormal_score for item in scored])
    auc = roc_auc(positive, scores)

    def ratio(hits: int, total: int) -> float | None:
        return round(hits / total, 4) if total else None

    operating_specificity = None
    if auc is not None:
        threshold = choose_threshold(positive, scores, OPERATING_SENSITIVITY)
        operating_specificity = round(binary_report(positive, scores, threshold)["specificity"], 4)
    return {
        "n": len(scored),
        "auc": round(auc, 4) if auc is not None else None,
        "sensitivity": ratio(int((decided & positive).sum()), int(positive.sum())),
        "specificity": ratio(int((~decided & ~positive).sum()), int((~positive).sum())),
        "specificity_at_sensitivity_95": operating_specificity,
    }


# The prepared initial state ----------------------------------------------------------------


def database_url(base: str, name: str) -> str:
    return urlsplit(base)._replace(path=f"/{name}").geturl()


def admin_execute(base: str, *statements: str) -> None:
    admin = urlsplit(base)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


def base_name(base: str) -> str:
    return urlsplit(base).path.lstrip("/") or "kidney_replay"


def prepare_initial(args, work: Path) -> dict:
    """The base database and data folder: migrated, the initial model serving, the users."""
    name = base_name(args.database_url)
    admin_execute(
        args.database_url,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}"',
    )
    shutil.rmtree(work / "base", ignore_errors=True)
    environment = isolated_environment(
        str(work / "base"), DATABASE_URL=database_url(args.database_url, name)
    )
    manage(environment, "migrate", "--noinput")
    if args.initial_shipped:
        print(manage(environment, "bootstrap_model").strip(), flush=True)
        return _create_users(environment, work)
    print(f"Training the initial model on {args.initial} (the default `train`) ...", flush=True)
    started = time.perf_counter()
    if args.initial_as_labels:
        # Confirmed labels from the start, as a hospital that imports its data set has: every
        # retraining run then trains on them too, with the stream's new labels.
        manage(environment, "import_dataset", str(args.initial), "--classes", args.classes)
        source = ["--from-labels"]
    else:
        source = ["--data", str(args.initial)]
    output = manage(
        environment, "train", *source, "--classes", args.classes, *args.initial_args.split()
    )
    print(output.strip(), flush=True)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return _create_users(environment, work)


def _create_users(environment: dict, work: Path) -> dict:
    tokens = {
        role: manage(environment, "create_api_user", username, "--role", role).split()[-1]
        for role, username in USERS.items()
    }
    (work / "tokens.json").write_text(json.dumps(tokens))
    return tokens


def serve_initial(environment: dict, version: int | None) -> int:
    """Serve the initial version (the newest, unless given) whatever the gate says; logged."""
    script = (
        "from training.models import ModelVersion; "
        "from training.services import model_version_promote; "
        f"wanted = {version!r}; "
        "version = ModelVersion.objects.get(version=wanted) if wanted else "
        "ModelVersion.objects.order_by('-version').first(); "
        "version.status == 'serving' or model_version_promote("
        f"model_version=version, override_reason={INITIAL_OVERRIDE!r}); "
        "print(version.version)"
    )
    return int(manage(environment, "shell", "-c", script).split()[-1])


def clone(args, work: Path, mode: str) -> dict:
    """A database and data folder of this replay's own, copied from the prepared base."""
    name = f"{base_name(args.database_url)}_{mode}"
    admin_execute(
        args.database_url,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}" TEMPLATE "{base_name(args.database_url)}"',
    )
    data_dir = work / mode
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.copytree(work / "base", data_dir, ignore=shutil.ignore_patterns("broker", "logs"))
    environment = isolated_environment(
        str(data_dir),
        DATABASE_URL=database_url(args.database_url, name),
        KIDNEY_UPLOAD_RATE="100000/minute",
        KIDNEY_EVIDENCE_MAPS="on_request",
        KIDNEY_RETRAIN_MIN_NEW_LABELS=str(args.retrain_every),
        KIDNEY_RETRAIN_PARAMETERS=args.retrain_parameters,
    )
    # A base prepared by an earlier version of the code catches up with its migrations.
    manage(environment, "migrate", "--noinput")
    return environment


def schedule_retraining(environment: dict, *, enabled: bool) -> None:
    """Beat's retrain check every few seconds (its production interval is minutes), or off."""
    manage(
        environment,
        "shell",
        "-c",
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask; "
        f"every, _ = IntervalSchedule.objects.get_or_create(every={BEAT_SECONDS}, "
        "period='seconds'); "
        "PeriodicTask.objects.filter(task='retraining.tasks.retrain_if_enough_new_labels')"
        f".update(interval=every, enabled={enabled!r})",
    )


def promotion_counts(environment: dict, since: str) -> dict:
    script = (
        "import json; from training.models import PromotionLog; "
        f"logs = PromotionLog.objects.filter(created__gt={since!r}); "
        "print(json.dumps({'promotions': logs.filter(decision='promoted').count(), "
        "'rejections': logs.filter(decision='rejected').count()}))"
    )
    return json.loads(manage(environment, "shell", "-c", script).strip().splitlines()[-1])


# One replay through the running service ----------------------------------------------------


class Client:
    def __init__(self, base: str, tokens: dict):
        self.base = base
        self.sessions = {}
        for role, token in tokens.items():
            session = requests.Session()
            session.headers["Authorization"] = f"Token {token}"
            self.sessions[role] = session

    def get(self, role: str, path: str, **params) -> dict:
        response = self.sessions[role].get(f"{self.base}{path}", params=params, timeout=60)
        response.raise_for_status()
        return response.json()

    def get_all(self, role: str, path: str) -> list[dict]:
        results, page = [], 1
        while True:
            body = self.get(role, path, page=page)
            results += body["results"]
            if not body["next"]:
                return results
            page += 1

    def post(self, role: str, path: str, **options) -> requests.Response:
        return self.sessions[role].post(f"{self.base}{path}", timeout=120, **options)


def upload(client: Client, item: StreamItem) -> str | None:
    """The scan's id; None (and a line saying why) for a file the service refuses."""
    for _ in range(10):  # a throttled or briefly unavailable server is asked again
        response = client.post(
            "clinician", "/api/scans/", files={"file": ("upload", item.path.read_bytes())}
        )
        if response.status_code in (200, 202):
            return response.json()["id"]
        if response.status_code in (400, 413, 415):
            print(f"  refused {item.path.name}: {response.text[:200]}", flush=True)
            return None
        time.sleep(1)
    raise RuntimeError(f"{item.path}: upload failed: {response.status_code} {response.text}")


def wait_for_inference(client: Client, timeout: float) -> None:
    def idle() -> bool:
        return all(
            client.get("clinician", "/api/scans/", status=status)["count"] == 0
            for status in ("queued", "processing")
        )

    wait_until(idle, timeout=timeout, interval=1, what="every upload to be classified")


def queue_order(client: Client, wanted: set[str]) -> list[str]:
    """The chunk's scans in review-queue order (most uncertain first)."""
    ordered, page = [], 1
    while len(ordered) < len(wanted):
        body = client.get("radiologist", "/api/review-queue/", page=page)
        ordered += [item["id"] for item in body["results"] if item["id"] in wanted]
        if not body["next"]:
            break
        page += 1
    return ordered


def server_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def settle_retraining(client: Client) -> bool:
    """Whether beat would start a run on the labels as they are now; if so, wait until the
    run it starts has ended (the replay reviews nothing meanwhile)."""

    def trigger() -> dict:
        return client.get("ml_engineer", "/api/training-runs/trigger/")

    status = trigger()
    if not status["ready"] and status["active_run"] is None:
        return False

    def ended() -> bool:
        now = trigger()
        return not now["ready"] and now["active_run"] is None

    wait_until(ended, timeout=4 * 3600, interval=1, what="the training run beat starts to end")
    return True


def replay(args, work: Path, tokens: dict, mode: str, stream: list[StreamItem]) -> Replay:
    environment = clone(args, work, mode)
    schedule_retraining(environment, enabled=mode == "retraining")
    started_at = datetime.now().astimezone().isoformat()
    outcome = Replay(mode)
    redis_port, web_port = free_port(), free_port()
    environment["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    with Processes(environment, work / mode / "logs") as processes:
        processes.redis(redis_port)
        processes.web(web_port)
        processes.worker("inference", queues="inference,default")
        processes.worker("training", queues="training")
        processes.beat()
        client = Client(f"http://127.0.0.1:{web_port}", tokens)
        labels_since_run = 0
        seen: set[str] = set()
        for number, start in enumerate(range(0, len(stream), args.chunk), start=1):
            chunk = stream[start : start + args.chunk]
            # One at a time: upload order is the acquisition order the service records.
            uploaded = []
            for item in chunk:
                scan_id = upload(client, item)
                # A refused file, or the same bytes again (the same scan), is not scored.
                if scan_id and scan_id not in seen:
                    seen.add(scan_id)
                    uploaded.append((scan_id, item))
            wait_for_inference(client, timeout=3600)
            scored, scan_ids = [], []
            for scan_id, item in uploaded:
                prediction = client.get("clinician", f"/api/scans/{scan_id}/")["prediction"]
                if prediction is None:  # the scan failed; its reason is in the API
                    continue
                scan_ids.append(scan_id)
                scored.append(
                    Scored(
                        label=item.label,
                        abnormal_score=1.0 - prediction["probabilities"][NEGATIVE_CLASS],
                        decided_abnormal=prediction["label"] != NEGATIVE_CLASS,
                        model_version=prediction["model_version"],
                    )
                )
            outcome.scored += scored
            truth = {scan_id: item.label for scan_id, item in uploaded}
            budget = round(args.review_budget * len(scan_ids))
            for scan_id in queue_order(client, set(scan_ids))[:budget]:
                scan = client.get("radiologist", f"/api/scans/{scan_id}/")
                reviewed = client.post(
                    "radiologist",
                    f"/api/scans/{scan_id}/review/",
                    json={"label": truth[scan_id], "version": scan["review_version"]},
                )
                reviewed.raise_for_status()
                labels_since_run += 1
                due = mode == "retraining" and labels_since_run >= args.retrain_every
                if due and settle_retraining(client):
                    labels_since_run = 0
            row = {
                "chunk": number,
                **score(scored),
                "versions": sorted({item.model_version for item in scored}),
                "reviewed": budget,
            }
            outcome.chunks.append(row)
            print(f"  {mode} chunk {number}: {json.dumps(row)}", flush=True)
        runs = client.get_all("ml_engineer", "/api/training-runs/")
        outcome.training_runs = [
            {key: run[key] for key in ("id", "status", "model_version", "trigger", "error")}
            for run in runs
            if server_time(run["created"]) > server_time(started_at)
        ]
    counts = promotion_counts(environment, started_at)
    outcome.promotions, outcome.rejections = counts["promotions"], counts["rejections"]
    return outcome


def chunk_interval(chunks: list[dict], metric: str = "auc") -> dict | None:
    """Mean of a metric over chunks with its 95% t-interval: a chunk holds a few studies, so
    the spread between chunks, not one block, says how sure a number is."""
    from scipy import stats

    values = np.array([row[metric] for row in chunks if row[metric] is not None])
    if len(values) < 2:
        return None
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    mean = float(values.mean())
    return {"chunks": len(values), "mean": round(mean, 4),
            "low": round(mean - half, 4), "high": round(mean + half, 4)}  # fmt: skip


def summary(outcome: Replay) -> dict:
    last_quarter = outcome.scored[len(outcome.scored) - len(outcome.scored) // 4 :]
    return {
        "chunks": outcome.chunks,
        "overall": score(outcome.scored),
        "last_quarter": score(last_quarter),
        "chunk_auc": chunk_interval(outcome.chunks),
        "chunk_specificity_at_sensitivity_95": chunk_interval(
            outcome.chunks, "specificity_at_sensitivity_95"
        ),
        "training_runs": len(outcome.training_runs),
        "failed_training_runs": sum(run["status"] == "failed" for run in outcome.training_runs),
        "promotions": outcome.promotions,
        "rejections": outcome.rejections,
    }


def learning_curves(results: dict, png: Path) -> None:
    """The learning curve as a PNG, and the same as an SVG beside it: text, so that docs can
    keep a figure without binary files in the repository."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(10, 4), dpi=100)
    for mode, result in results.items():
        chunks = [row["chunk"] for row in result["chunks"]]
        for axis, metric in zip(axes, ("auc", "sensitivity"), strict=True):
            values = [np.nan if row[metric] is None else row[metric] for row in result["chunks"]]
            dashed = {"linestyle": "--", "marker": "s"} if mode == "frozen" else {"marker": "o"}
            axis.plot(chunks, values, label=mode, **dashed)
    for axis, metric in zip(axes, ("prospective ROC AUC", "sensitivity"), strict=True):
        axis.set_xlabel("chunk (acquisition order)")
        axis.set_ylabel(metric)
        axis.set_ylim(0, 1.02)
        axis.legend()
    figure.tight_layout()
    figure.savefig(png)
    figure.savefig(png.with_suffix(".svg"), metadata={"Date": None})
    pyplot.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--initial", type=Path, help="Class subfolders to train the start on.")
    source.add_argument("--initial-version", type=int, help="Start from this version in --work.")
    source.add_argument(
        "--initial-shipped",
        action="store_true",
        help="Start from the model a fresh install serves (bootstrap_model).",
    )
    parser.add_argument("--stream", type=Path, required=True, help="Class subfolders.")
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--review-budget", type=float, default=1.0)
    parser.add_argument("--retrain-every", type=int, default=200, help="New labels per run.")
    parser.add_argument(
        "--retrain-parameters",
        default="",
        help="Retraining recipe overrides as JSON (KIDNEY_RETRAIN_PARAMETERS), e.g. "
        '\'{"mode": "finetune", "learning_rate": 0.0001}\'.',
    )
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--frozen", action="store_true", help="Retraining off (the baseline).")
    modes.add_argument("--compare", action="store_true", help="Retraining, then frozen.")
    parser.add_argument("--classes", default="normal,stone")
    parser.add_argument(
        "--initial-args", default="", help="Extra `train` options for the initial model."
    )
    parser.add_argument(
        "--initial-as-labels",
        action="store_true",
        help="Import --initial as confirmed labels and train on them (`train --from-labels`), "
        "so retraining runs train on them too; else `train --data`.",
    )
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench" / "results" / "replay")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/kidney_replay"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.initial or args.initial_shipped:
        tokens = prepare_initial(args, args.work)
    else:
        tokens = json.loads((args.work / "tokens.json").read_text())
    base_environment = isolated_environment(
        str(args.work / "base"),
        DATABASE_URL=database_url(args.database_url, base_name(args.database_url)),
    )
    initial_version = serve_initial(base_environment, args.initial_version)
    print(f"Initial model: v{initial_version}", flush=True)
    stream = stream_in_acquisition_order(args.stream, args.classes.split(","))
    print(f"Stream: {len(stream)} images from {args.stream}, chunks of {args.chunk}", flush=True)
    wanted = ["retraining", "frozen"] if args.compare else []
    wanted = wanted or ["frozen" if args.frozen else "retraining"]
    results, outcomes = {}, {}
    for mode in wanted:
        started = time.perf_counter()
        outcomes[mode] = replay(args, args.work, tokens, mode, stream)
        results[mode] = summary(outcomes[mode])
        results[mode]["seconds"] = round(time.perf_counter() - started)
        result = results[mode]
        print(
            f"{mode}: overall {json.dumps(result['overall'])}; last quarter "
            f"{json.dumps(result['last_quarter'])}; {result['training_runs']} training runs "
            f"({result['failed_training_runs']} failed), "
            f"{result['promotions']} promotions, {result['rejections']} rejections",
            flush=True,
        )
    learning_curves(results, args.work / "learning-curve.png")
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    predictions = {
        mode: [asdict(item) for item in outcome.scored] for mode, outcome in outcomes.items()
    }
    (args.work / "predictions.json").write_text(json.dumps(predictions))
    print(f"Learning curve: {args.work / 'learning-curve.png'} (and .svg)", flush=True)
    print(json.dumps({mode: without_seconds(result) for mode, result in results.items()}))


def without_seconds(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "seconds"}


if __name__ == "__main__":
    main()
