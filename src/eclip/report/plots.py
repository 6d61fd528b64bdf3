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


def score_histogram(
    scores: np.ndarray,
    positive: np.ndarray,
    title: str,
    xlabel: str,
    labels: tuple[str, str],
    threshold: float | None = None,
) -> str:
    """Histogram of ``(p,)`` float scores split by the ``(p,)`` bool ``positive``, as an SVG
    string; ``threshold``, when given, is drawn as a vertical line (it must be on this axis)."""
    fig, ax = _axes(title)
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    bins = np.linspace(np.nanmin(s[ok]) if ok.any() else 0.0, np.nanmax(s[ok]) if ok.any() else 1.0, 41)
    ax.hist(
        [s[ok & ~positive], s[ok & positive]], bins=bins, stacked=True, label=list(labels), color=["#b0b7c3", "#2f6fdf"]
    )
    if threshold is not None:
        ax.axvline(threshold, color="#d03030", linewidth=1.2, label=f"threshold {threshold:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)


#: Sizes up to this get one bar each on a linear axis; a larger largest size, log-spaced bins.
LINEAR_SIZES_UP_TO = 50
#: The count axis goes log when its tallest bar is at least this many times its shortest one.
LOG_COUNTS_FROM_RATIO = 100
#: Bars with at most this many bars in all are labelled with their counts.
LABELLED_BARS_UP_TO = 20


def size_bins(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, str]:
    """How :func:`size_histogram` draws ``(g,)`` int group sizes.

    Returns:
        ``(edges, counts, xscale, yscale)``: ``(k + 1,)`` float bin edges (half-integers, so a
        bar is centred on its sizes), ``(k,)`` int64 counts, and ``linear`` or ``log`` for each
        axis. The size axis is linear, one bar per size, while the largest size is at most
        :data:`LINEAR_SIZES_UP_TO`, and log-binned beyond; the count axis is log only when the
        non-empty bars span :data:`LOG_COUNTS_FROM_RATIO` times or more.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    top = max(int(sizes.max()) if len(sizes) else 1, 1)
    if top <= LINEAR_SIZES_UP_TO:
        xscale = "linear"
        edges = np.arange(1, top + 2, dtype=np.float64) - 0.5
    else:
        xscale = "log"
        edges = np.unique(np.geomspace(1, top + 1, 30).astype(np.int64)).astype(np.float64) - 0.5
        edges[-1] = top + 0.5
    counts = np.histogram(sizes, bins=edges)[0].astype(np.int64)
    filled = counts[counts > 0]
    yscale = "log" if len(filled) and filled.max() >= LOG_COUNTS_FROM_RATIO * filled.min() else "linear"
    return edges, counts, xscale, yscale


def _plain(value: float, _pos: int | None = None) -> str:
    """A tick label as a plain number: ``1``, ``10``, ``1,000`` (never ``10⁰`` or ``2×10⁰``)."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def size_figure(sizes: np.ndarray, title: str, ylabel: str = "count"):  # noqa: ANN201 - matplotlib Figure
    """The figure of :func:`size_histogram` (scales from :func:`size_bins`), not yet SVG."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    fig, ax = _axes(title)
    edges, counts, xscale, yscale = size_bins(sizes)
    left, width = edges[:-1], np.diff(edges)
    bars = ax.bar(left, counts, width=width, align="edge", color="#2f6fdf", edgecolor="white", linewidth=0.5)
    if len(counts) <= LABELLED_BARS_UP_TO:
        ax.bar_label(bars, labels=[f"{c:,}" if c else "" for c in counts], fontsize=7, padding=1)
    if xscale == "log":
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(edges[0], edges[-1])
    if yscale == "log":
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10))
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.set_ylim(0, max(int(counts.max()) if len(counts) else 1, 1) * 1.12)
    ax.set_xlabel("size (rows)")
    ax.set_ylabel(ylabel)
    return fig


def size_histogram(sizes: np.ndarray, title: str, ylabel: str = "count") -> str:
    """Histogram of ``(g,)`` int group or cluster sizes as SVG, on the scales
    :func:`size_bins` picks (linear integer ticks for small sizes, log only across orders of
    magnitude, plain-number tick labels)."""
    return _svg(size_figure(sizes, title, ylabel))


def pr_figure(
    curve: list[tuple[float, float, float, float]],
    title: str,
    xlabel: str,
    chosen: float | None = None,
    unit_interval: bool = False,
):  # noqa: ANN201 - matplotlib Figure
    """The figure of :func:`pr_curve`, not yet SVG."""
    fig, ax = _axes(title)
    t, p, r, f = (np.array(v) for v in zip(*curve))
    ax.plot(t, p, label="precision", color="#2f6fdf")
    ax.plot(t, r, label="recall", color="#e0702f")
    ax.plot(t, f, label="F1", color="#3a9a4a", linestyle="--")
    if unit_interval:
        ax.set_xlim(0, 1)
    if chosen is not None:
        line = ax.axvline(chosen, color="#d03030", linewidth=1.2, label=f"run's threshold {chosen:g}")
        line.set_gid("threshold-line")
    ax.patch.set_gid("pr-axes")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, frameon=False)
    return fig


def pr_curve(
    curve: list[tuple[float, float, float, float]],
    title: str,
    xlabel: str,
    chosen: float | None = None,
    unit_interval: bool = False,
) -> str:
    """Precision, recall and F1 against the threshold, as SVG.

    Args:
        curve: ``[(threshold, precision, recall, f1)]``, thresholds ascending, on the axis
            ``xlabel`` names.
        chosen: the run's threshold on that same axis, drawn as a red vertical line (SVG id
            ``threshold-line``; the plotting area's background has id ``pr-axes``).
        unit_interval: the axis is a probability: drawn from 0 to 1 whatever the curve spans.
    """
    return _svg(pr_figure(curve, title, xlabel, chosen, unit_interval))
