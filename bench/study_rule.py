"""The study rule, chosen and measured in studies: the shipped model's slice scores grouped
into the development set's studies (runs of consecutive file numbers split where the image
content jumps, bench/study_runs.py) and into studies built by putting a short run of real
stone slices into a real normal study.

For each window, the study threshold is chosen on the validation block (for
--target-sensitivity in studies, on its stone runs and built studies); the held-out block
(never trained on, never chosen on) reports study-level sensitivity and specificity with 95%
Wilson intervals, beside the rule "flag the study when any slice is flagged at the slice
threshold". The window written (--window, 3 by default) is the one the product asks for: a
stone on as few as 3 adjacent slices flags a study, a single high slice does not.

    .venv/bin/python bench/study_rule.py --data ../shared/data/kidney-ct

The last line printed is the report as one JSON object; `--write-model` stores the chosen rule
and threshold in the shipped model's description (model.json), where bootstrap_model reads it.
"""

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from bench.base_model import validated_model_arguments, validation_and_held_out  # noqa: E402
from bench.study_runs import study_runs  # noqa: E402
from ml_core.decision import NEGATIVE_CLASS, abnormal_scores, choose_threshold  # noqa: E402
from ml_core.numbers import rounded  # noqa: E402
from ml_core.preprocessing import PreprocessingConfig  # noqa: E402
from ml_core.shipped import describe_shipped, shipped_description  # noqa: E402
from ml_core.study import (  # noqa: E402
    StudyRule,
    study_score,
    wilson_interval,
)
from ml_core.training import predict_entries  # noqa: E402

STONE = "stone"


def block_studies(entries, scores, rng, *, stone_run: int, segment: int) -> dict:
    """A block's studies, as lists of slice scores: `normal` (each normal study, and each cut
    into segments of `segment` slices), `stone` (each run of stone slices, a study of stones
    alone), `built` (each normal segment with `stone_run` consecutive slices of a real stone
    run put in at a random place) and `built_whole_run` (with a whole real stone run)."""
    by_class = {}
    for label in (NEGATIVE_CLASS, STONE):
        members = sorted(
            (i for i, entry in enumerate(entries) if entry.label == label),
            key=lambda i: entries[i].order,
        )
        lengths = study_runs([entries[i].path for i in members])
        cuts = np.cumsum([0, *lengths])
        by_class[label] = [scores[members[start:end]] for start, end in itertools.pairwise(cuts)]
    normal_studies = by_class[NEGATIVE_CLASS]
    segments = [
        study[start : start + segment]
        for study in normal_studies
        for start in range(0, len(study) - segment + 1, segment)
    ] or normal_studies
    stone_runs = by_class[STONE]
    built, built_whole = [], []
    for number, normal in enumerate(segments):
        run = stone_runs[number % len(stone_runs)]
        start = int(rng.integers(0, max(1, len(run) - stone_run + 1)))
        built.append(_insert(normal, run[start : start + stone_run], rng))
        built_whole.append(_insert(normal, run[: len(normal) - 1], rng))
    return {
        "normal_studies": normal_studies,
        "normal_segments": segments,
        "stone_runs": stone_runs,
        "built": built,
        "built_whole_run": built_whole,
    }


def _insert(normal: np.ndarray, stones: np.ndarray, rng) -> np.ndarray:
    at = int(rng.integers(0, len(normal) - len(stones) + 1))
    study = normal.copy()
    study[at : at + len(stones)] = stones
    return study


def share_flagged(studies, rule: StudyRule, threshold: float) -> dict:
    flagged = sum(study_score([study], rule) >= threshold for study in studies)
    low, high = wilson_interval(int(flagged), len(studies))
    return {"flagged": int(flagged), "of": len(studies), "share": flagged / max(1, len(studies)),
            "interval": [low, high]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    validated_model_arguments(parser)
    parser.add_argument("--windows", default="1,2,3,4,5")
    parser.add_argument("--window", type=int, default=StudyRule().window, help="Written.")
    parser.add_argument("--stone-run", type=int, default=3, help="Stone slices per built study.")
    parser.add_argument("--segment", type=int, default=50, help="Slices per normal segment.")
    parser.add_argument("--target-sensitivity", type=float, default=1.0, help="In studies.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-model", action="store_true")
    args = parser.parse_args()

    model, description, validation, held_out = validation_and_held_out(args)
    classes = description["classes"]
    preprocessing = PreprocessingConfig.from_dict(description["preprocessing"])
    blocks = {}
    for name, block in (("validation", validation), ("held_out", held_out)):
        scores = abnormal_scores(predict_entries(model, block, preprocessing, 32), classes)
        rng = np.random.default_rng(args.seed)
        blocks[name] = block_studies(
            block, scores, rng, stone_run=args.stone_run, segment=args.segment
        )
        print(name, {key: len(value) for key, value in blocks[name].items()}, flush=True)

    slice_threshold = float(description["threshold"])
    report = {"slice_threshold": slice_threshold, "rules": {}}
    report["rules"]["any_slice_at_slice_threshold"] = {
        "threshold": slice_threshold,
        **_measure(blocks, StudyRule(window=1), slice_threshold),
    }
    for window in [int(w) for w in args.windows.split(",")]:
        rule = StudyRule(window=window)
        chosen_on = blocks["validation"]
        positives = chosen_on["built"] + chosen_on["stone_runs"]
        negatives = chosen_on["normal_segments"]
        study_scores = np.array([study_score([s], rule) for s in positives + negatives])
        is_positive = np.array([True] * len(positives) + [False] * len(negatives))
        threshold = choose_threshold(is_positive, study_scores, args.target_sensitivity)
        measured = {"threshold": threshold, **_measure(blocks, rule, threshold)}
        report["rules"][f"window_{window}"] = measured
        print(f"window {window}: {json.dumps(rounded(measured))}", flush=True)
    rule = StudyRule(window=args.window)
    threshold = report["rules"][f"window_{rule.window}"]["threshold"]
    report["chosen"] = {"rule": rule.to_dict(), "threshold": threshold}
    print(json.dumps(rounded(report)))
    if args.write_model:
        study = {
            "rule": rule.to_dict(),
            "threshold": threshold,
            "command": "bench/study_rule.py " + " ".join(sys.argv[1:]),
            "held_out": rounded(report["rules"][f"window_{rule.window}"]["held_out"]),
        }
        describe_shipped(args.model, {**shipped_description(args.model), "study": study})


def _measure(blocks, rule, threshold) -> dict:
    return {
        name: {kind: share_flagged(studies, rule, threshold) for kind, studies in block.items()}
        for name, block in blocks.items()
    }


if __name__ == "__main__":
    main()
