"""A study's verdict from its slices' scores.

A stone shows on a few adjacent slices of a study of 50 to 500; a normal study has slices the
model scores a little high here and there, one at a time. So a study is scored by its most
suspicious run of `window` adjacent slices (the mean of their scores), within each series in
anatomical order, and flagged when that reaches the model version's study threshold, chosen
like the slice threshold for a target sensitivity, but counted in studies. A series shorter
than the window (down to a single key image) is scored as a whole.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

from ml_core.decision import choose_threshold

# Key slices sent back and shown first: the flagged run's slices and the highest others.
MAX_KEY_SLICES = 5


@dataclass(frozen=True)
class StudyRule:
    window: int = 3  # adjacent slices whose mean score is the run's score

    def __post_init__(self):
        if self.window < 1:
            raise ValueError("The study rule's window is at least one slice.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "StudyRule":
        return cls(**(values or {}))


@dataclass(frozen=True)
class StudyVerdict:
    positive: bool
    score: float
    # Indices into the flattened slices (series after series), most telling first.
    key_slices: list[int]


def run_scores(scores: np.ndarray, rule: StudyRule) -> np.ndarray:
    """The score of each run of `window` adjacent slices (one run for a shorter series)."""
    scores = np.asarray(scores, dtype=np.float64)
    width = min(rule.window, len(scores))
    if width == 0:
        return np.zeros(0)
    sums = np.convolve(scores, np.ones(width), mode="valid")
    return sums / width


def study_score(series_scores: list[np.ndarray], rule: StudyRule) -> float:
    """The study's score: its most suspicious run in any series."""
    runs = [run_scores(scores, rule) for scores in series_scores if len(scores)]
    if not runs:
        raise ValueError("A study needs at least one scored slice.")
    return float(max(run.max() for run in runs))


def study_verdict(series_scores: list[np.ndarray], rule: StudyRule, threshold: float):
    """Flagged or not, the score, and the key slices: the slices of every run that reaches the
    threshold (or, in a study not flagged, of its first most suspicious run), highest first,
    up to MAX_KEY_SLICES."""
    score = study_score(series_scores, rule)
    positive = score >= threshold
    candidates, offset = set(), 0
    for scores in series_scores:
        runs = run_scores(scores, rule)
        width = min(rule.window, len(scores))
        if positive:
            chosen = np.flatnonzero(runs >= threshold)
        else:  # the first most suspicious run only
            chosen = np.flatnonzero(runs == score)[:1] if not candidates else []
        for start in chosen:
            candidates.update(offset + start + step for step in range(width))
        offset += len(scores)
    flat = np.concatenate([np.asarray(s, dtype=np.float64) for s in series_scores])
    ranked = sorted(candidates, key=lambda index: (-flat[index], index))
    return StudyVerdict(bool(positive), score, [int(i) for i in ranked[:MAX_KEY_SLICES]])


def position_along_normal(position: list[float], orientation: list[float]) -> float:
    """Where a slice lies in its series (mm): ImagePositionPatient projected on the slice
    normal, the cross product of ImageOrientationPatient's row and column directions."""
    orientation = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:6])
    return float(np.dot(normal, np.asarray(position, dtype=np.float64)))


def built_studies(
    normal_scores: np.ndarray,
    stone_scores: np.ndarray,
    *,
    study_length: int,
    stone_run: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Studies built from slice scores in acquisition order: consecutive normal slices cut
    into studies of `study_length`, each once as it is (normal) and once with a run of
    `stone_run` consecutive stone slices put in its place at a random position (stone); the
    stone runs are taken in turn from the stone slices. Returns (studies, is_positive)."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    stone_scores = np.asarray(stone_scores, dtype=np.float64)
    count = max(1, len(normal_scores) // study_length)
    runs = max(1, len(stone_scores) - stone_run + 1)
    studies, positive = [], []
    for number in range(count):
        normal = normal_scores[number * study_length : (number + 1) * study_length]
        if len(normal) < stone_run:
            continue
        start = (number * stone_run) % runs
        stones = stone_scores[start : start + stone_run]
        at = int(rng.integers(0, len(normal) - len(stones) + 1))
        with_stone = normal.copy()
        with_stone[at : at + len(stones)] = stones
        studies += [normal, with_stone]
        positive += [False, True]
    return studies, np.array(positive, dtype=bool)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (sensible at 0 and at 1)."""
    if total == 0:
        return (math.nan, math.nan)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


# Every built stone study flagged: a missed stone study is the costly error.
STUDY_TARGET_SENSITIVITY = 1.0
BUILT_STUDY_LENGTH = 50


def study_threshold_from_slices(
    is_positive: np.ndarray, scores: np.ndarray, rule: StudyRule, *, seed: int = 0
) -> float | None:
    """A version's study threshold from its validation slices (in acquisition order): studies
    built from them (built_studies, a run of `rule.window` stone slices in each normal one),
    the threshold that flags every built stone study. None when there are too few slices to
    build one."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    normal, stone = scores[~is_positive], scores[is_positive]
    if len(stone) < rule.window or len(normal) < rule.window:
        return None
    studies, positive = built_studies(
        normal,
        stone,
        study_length=min(BUILT_STUDY_LENGTH, len(normal)),
        stone_run=rule.window,
        rng=np.random.default_rng(seed),
    )
    if not positive.any():
        return None
    study_scores = np.array([study_score([study], rule) for study in studies])
    return choose_threshold(positive, study_scores, STUDY_TARGET_SENSITIVITY)
