"""Report figures as inline SVG (matplotlib, Agg backend; text drawn as paths, no fonts or
network needed to view them)."""

from __future__ import annotations

import io

import numpy as np


def _svg(fig) -> str:  # noqa: ANN001 - matplotlib Figure
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(
        buf, format="svg", bbox_inches="tight", metadata={"Creator": None, "Date": None, "Format": None, "Type": None}
    )
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _axes(title: str):  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "path"
    fig, ax = plt.subplots(figsize=(5.2, 2.8))
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def score_histogram(scores: np.ndarray, positive: np.ndarray, title: str, xlabel: str, labels: tuple[str, str]) -> str:
    """Histogram of ``(p,)`` scores split by the ``(p,)`` bool ``positive``, as an SVG string."""
    fig, ax = _axes(title)
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    bins = np.linspace(np.nanmin(s[ok]) if ok.any() else 0.0, np.nanmax(s[ok]) if ok.any() else 1.0, 41)
    ax.hist(
        [s[ok & ~positive], s[ok & positive]], bins=bins, stacked=True, label=list(labels), color=["#b0b7c3", "#2f6fdf"]
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


def size_histogram(sizes: np.ndarray, title: str) -> str:
    """Histogram of group or cluster sizes (log-spaced bins, log count axis), as SVG."""
    fig, ax = _axes(title)
    sizes = np.asarray(sizes)
    top = max(int(sizes.max()) if len(sizes) else 1, 2)
    bins = np.unique(np.geomspace(1, top + 1, 30).astype(int))
    ax.hist(sizes, bins=bins, color="#2f6fdf")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("size (rows)")
    ax.set_ylabel("count")
    return _svg(fig)


def pr_curve(
    curve: list[tuple[float, float, float, float]], title: str, xlabel: str, chosen: float | None = None
) -> str:
    """Precision, recall and F1 against the threshold, as SVG."""
    fig, ax = _axes(title)
    t, p, r, f = (np.array(v) for v in zip(*curve))
    ax.plot(t, p, label="precision", color="#2f6fdf")
    ax.plot(t, r, label="recall", color="#e0702f")
    ax.plot(t, f, label="F1", color="#3a9a4a", linestyle="--")
    if chosen is not None:
        ax.axvline(chosen, color="#888", linewidth=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)
