"""The report's pictures, drawn with matplotlib and returned as PNG data URIs (no files).

Every function takes plain numbers and returns `data:image/png;base64,...`,
which an `<img>` shows with no other file and no JavaScript.

Example:
    >>> uri = learning_curves([{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4,
    ...                         "val_accuracy": 0.8, "best": True}], "accuracy")
    >>> uri.startswith("data:image/png;base64,")
    True
"""

import base64
import io

import numpy as np


def _figure(width: float = 5.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, height), dpi=100)
    return plt, figure, axes


def _uri(plt, figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png(uri: str) -> bytes:
    """The PNG bytes of a data URI from this module."""
    return base64.b64decode(uri.split(",", 1)[1])


def learning_curves(epochs: list[dict], metric: str) -> str:
    """Train and validation loss, and the validation `metric`, per epoch; the kept epoch
    marked."""
    plt, figure, axes = _figure()
    x = [r["epoch"] for r in epochs]
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        if all(key in r for r in epochs):
            axes.plot(x, [r[key] for r in epochs], style, label=key.replace("_", " "))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    key = f"val_{metric}"
    if all(key in r for r in epochs):
        other = axes.twinx()
        other.plot(x, [r[key] for r in epochs], "-^", color="tab:green",
                   label=f"validation {metric}")
        other.set_ylabel(metric)
        kept = [r for r in epochs if r.get("best")]
        if kept:
            other.plot([kept[-1]["epoch"]], [kept[-1][key]], "*", markersize=16,
                       color="tab:red", label="kept")
        other.legend(loc="upper right")
    axes.legend(loc="upper left")
    axes.set_xticks(x)
    return _uri(plt, figure)


def confusion(matrix: np.ndarray, names: list, normalized: bool) -> str:
    """The confusion matrix (rows: true class), as counts or row-normalized."""
    size = max(3.4, 0.45 * len(names) + 2)
    plt, figure, axes = _figure(size + 1, size)
    values = matrix / np.maximum(matrix.sum(1, keepdims=True), 1) if normalized else matrix
    image = axes.imshow(values, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(names) <= 12:
        for i in range(len(names)):
            for j in range(len(names)):
                text = f"{values[i, j]:.2f}" if normalized else f"{int(values[i, j])}"
                axes.text(j, i, text, ha="center", va="center",
                          color="white" if values[i, j] > values.max() / 2 else "black")
    axes.set_title("row-normalized" if normalized else "counts")
    return _uri(plt, figure)


def reliability(before: dict, after: dict | None) -> str:
    """Reliability diagram: accuracy against confidence per bin (`calibration.reliability`),
    before and after temperature scaling; the diagonal is perfect calibration."""
    plt, figure, axes = _figure(4.6, 4.2)
    axes.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    for table, label in ((before, "before"), (after, "after")):
        if table is not None:
            used = table["count"] > 0
            axes.plot(table["confidence"][used], table["accuracy"][used], "-o", label=label)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    axes.legend()
    return _uri(plt, figure)


def histogram(values: np.ndarray, xlabel: str, bins: int = 20) -> str:
    plt, figure, axes = _figure(4.6, 3.0)
    axes.hist(values, bins=bins, color="tab:blue")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("examples")
    return _uri(plt, figure)


def bars(labels: list, values: list, ylabel: str, extra: list | None = None,
         extra_label: str = "") -> str:
    """One bar per label (e.g. accuracy by text length, F1 per label), optional markers."""
    plt, figure, axes = _figure(max(4.6, 0.3 * len(labels) + 2), 3.4)
    axes.bar(range(len(labels)), values, color="tab:blue", label=ylabel)
    if extra is not None:
        axes.plot(range(len(labels)), extra, "o", color="tab:red", label=extra_label)
        axes.legend()
    axes.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0,
                    ha="right" if len(labels) > 6 else "center")
    axes.set_ylabel(ylabel)
    return _uri(plt, figure)


def scatter(predicted: np.ndarray, true: np.ndarray, title: str) -> str:
    """Predicted against true numbers, with the diagonal."""
    plt, figure, axes = _figure(4.4, 4.2)
    axes.scatter(true, predicted, s=6, alpha=0.5)
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    axes.plot([low, high], [low, high], "--", color="gray")
    axes.set_xlabel("true")
    axes.set_ylabel("predicted")
    axes.set_title(title)
    return _uri(plt, figure)
