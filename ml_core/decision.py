"""From class probabilities to a decision, and the sensitivity-first metrics behind it.

A scan is positive (abnormal) when the probability of any class but the negative class reaches
the model version's threshold. The threshold is chosen on validation data for a target
sensitivity, because a missed stone costs more than a false alarm.
"""

import math

import numpy as np

NEGATIVE_CLASS = "normal"


def abnormal_scores(probabilities: np.ndarray, classes: list[str]) -> np.ndarray:
    """(n, classes) probabilities -> (n,) probability of being anything but normal."""
    return 1.0 - np.asarray(probabilities)[:, classes.index(NEGATIVE_CLASS)]


def decide(probabilities: np.ndarray, classes: list[str], threshold: float) -> str:
    """The label for one scan: the likeliest abnormal class if abnormal, else normal."""
    probabilities = np.asarray(probabilities)
    negative = classes.index(NEGATIVE_CLASS)
    if 1.0 - probabilities[negative] < threshold:
        return NEGATIVE_CLASS
    abnormal = [index for index in range(len(classes)) if index != negative]
    return classes[max(abnormal, key=lambda index: probabilities[index])]


def choose_threshold(is_positive: np.ndarray, scores: np.ndarray, target_sensitivity: float):
    """The threshold halfway between the positive score at which sensitivity reaches the
    target and the highest negative score below it (or 0): on these scores the same
    specificity as the highest threshold that reaches the target, and at least its
    sensitivity, without sitting on the edge of the positives. On the next studies stones
    score a little lower than on validation, and a model that separates the validation block
    cleanly would otherwise get a threshold that misses them (replay G in
    docs/replays.md: 1.0 exactly)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positive_scores = np.sort(scores[is_positive])[::-1]
    if len(positive_scores) == 0:
        raise ValueError("Choosing a threshold needs at least one positive example.")
    needed = max(1, math.ceil(target_sensitivity * len(positive_scores) - 1e-9))
    edge = positive_scores[needed - 1]
    negatives_below = scores[~is_positive & (scores < edge)]
    below = float(negatives_below.max()) if len(negatives_below) else 0.0
    return float((edge + below) / 2.0)


def roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None with one class."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[is_positive], scores[~is_positive]
    if len(positives) == 0 or len(negatives) == 0:
        return None
    _, tie_group, group_sizes = np.unique(scores, return_inverse=True, return_counts=True)
    average_ranks = np.cumsum(group_sizes) - (group_sizes - 1) / 2.0
    ranks = average_ranks[tie_group]
    positive_rank_sum = ranks[is_positive].sum()
    pairs = len(positives) * len(negatives)
    return float((positive_rank_sum - len(positives) * (len(positives) + 1) / 2.0) / pairs)


def binary_report(is_positive: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Sensitivity, specificity, ROC AUC and the confusion counts at a threshold."""
    is_positive = np.asarray(is_positive, dtype=bool)
    predicted_positive = np.asarray(scores) >= threshold
    true_positive = int(np.sum(is_positive & predicted_positive))
    false_negative = int(np.sum(is_positive & ~predicted_positive))
    true_negative = int(np.sum(~is_positive & ~predicted_positive))
    false_positive = int(np.sum(~is_positive & predicted_positive))
    return {
        "sensitivity": _ratio(true_positive, true_positive + false_negative),
        "specificity": _ratio(true_negative, true_negative + false_positive),
        "auc": roc_auc(is_positive, scores),
        "threshold": float(threshold),
        "confusion": {
            "true_positive": true_positive,
            "false_negative": false_negative,
            "true_negative": true_negative,
            "false_positive": false_positive,
        },
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def evaluation_report(
    labels: list[str], probabilities: np.ndarray, classes: list[str], threshold: float
) -> dict:
    """binary_report for abnormal vs normal, plus counts per class and the confusion matrix
    of true class (rows) against decided class (columns)."""
    probabilities = np.asarray(probabilities)
    is_positive = np.array([label != NEGATIVE_CLASS for label in labels], dtype=bool)
    report = binary_report(is_positive, abnormal_scores(probabilities, classes), threshold)
    matrix = [[0] * len(classes) for _ in classes]
    for label, row in zip(labels, probabilities, strict=True):
        matrix[classes.index(label)][classes.index(decide(row, classes, threshold))] += 1
    report["n"] = {name: int(sum(label == name for label in labels)) for name in classes}
    report["confusion_matrix"] = {"classes": list(classes), "rows": matrix}
    return report


def roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) as the threshold falls through the scores."""
    is_positive = np.asarray(is_positive, dtype=bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    true_positives = np.concatenate([[0], np.cumsum(is_positive[order])])
    false_positives = np.concatenate([[0], np.cumsum(~is_positive[order])])
    return (
        false_positives / max(1, (~is_positive).sum()),
        true_positives / max(1, is_positive.sum()),
    )


def label_agreement(true_labels: list[str], decided_labels: list[str], classes: list[str]):
    """Decided labels against true ones: sensitivity and specificity of abnormal versus
    normal, and the confusion matrix (rows true, columns decided)."""
    names = list(classes) + sorted((set(true_labels) | set(decided_labels)) - set(classes))
    matrix = [[0] * len(names) for _ in names]
    for true, decided in zip(true_labels, decided_labels, strict=True):
        matrix[names.index(true)][names.index(decided)] += 1
    is_positive = np.array([label != NEGATIVE_CLASS for label in true_labels], dtype=bool)
    said_positive = np.array([label != NEGATIVE_CLASS for label in decided_labels], dtype=bool)
    true_positive = int(np.sum(is_positive & said_positive))
    true_negative = int(np.sum(~is_positive & ~said_positive))
    return {
        "n": len(true_labels),
        "sensitivity": _ratio(true_positive, int(is_positive.sum())),
        "specificity": _ratio(true_negative, int((~is_positive).sum())),
        "confusion_matrix": {"classes": names, "rows": matrix},
    }
