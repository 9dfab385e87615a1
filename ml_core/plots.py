"""Report plots as PNG bytes: the ROC curve with the operating point, the confusion matrix."""

import io

import numpy as np

from ml_core.decision import roc_curve


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot.subplots(figsize=(4.5, 4.5), dpi=100)


def _png(figure) -> bytes:
    output = io.BytesIO()
    figure.tight_layout()
    figure.savefig(output, format="png")
    from matplotlib import pyplot

    pyplot.close(figure)
    return output.getvalue()


def roc_png(is_positive: np.ndarray, scores: np.ndarray, report: dict) -> bytes:
    """The ROC curve and the operating point; with one class only (a tiny validation block)
    the curve is undefined, and the plot says so instead of failing."""
    figure, axes = _figure()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    if report["auc"] is None:
        axes.text(0.5, 0.5, "ROC undefined: one class only", ha="center", va="center")
    else:
        false_positive_rate, true_positive_rate = roc_curve(is_positive, scores)
        axes.plot(false_positive_rate, true_positive_rate, label=f"ROC AUC {report['auc']:.3f}")
        axes.scatter(
            [1 - report["specificity"]],
            [report["sensitivity"]],
            color="red",
            zorder=3,
            label=(
                f"threshold {report['threshold']:.3f}: sensitivity "
                f"{report['sensitivity']:.3f}, specificity {report['specificity']:.3f}"
            ),
        )
        axes.legend(loc="lower right", fontsize=7)
    axes.set_xlabel("1 - specificity")
    axes.set_ylabel("sensitivity")
    return _png(figure)


def confusion_png(report: dict) -> bytes:
    classes = report["confusion_matrix"]["classes"]
    rows = np.array(report["confusion_matrix"]["rows"])
    figure, axes = _figure()
    axes.imshow(rows, cmap="Blues")
    for (row, column), count in np.ndenumerate(rows):
        axes.text(column, row, str(count), ha="center", va="center")
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("decided")
    axes.set_ylabel("true")
    return _png(figure)
