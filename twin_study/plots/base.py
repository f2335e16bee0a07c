"""Plot style and reproducible figure files (the plot functions are in the sibling modules).

Conventions: plot functions take ``ax=None`` and return the figure; notebooks save with
``savefig(fig, name, out_dir)``, which writes byte-identical files when nothing changed so
rerunning the paper profile does not churn the committed ``figures/`` folder. Figures of the
quick profile are stamped "quick profile: smoke test" (``mark_profile``), so a CI-sized figure
is never mistaken for a result.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from twin_study import paths
from twin_study.results import atomic_write_bytes

# Metadata matplotlib would otherwise stamp with its version or the current time.
_FIXED_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}
FORMATS = tuple(_FIXED_METADATA)

QUICK_MARK = "quick profile: smoke test"
_MARK_GID = "twin-study-profile-mark"
_profile: str | None = None  # set by set_style(profile); savefig's default


def figure_axes(ax: Axes | None, **fig_kw) -> tuple[Figure, Axes]:
    """``(ax.figure, ax)``, or a new figure's ``plt.subplots(**fig_kw)`` when ``ax`` is None:
    how every plot function honours its ``ax=None``."""
    if ax is None:
        return plt.subplots(**fig_kw)
    return ax.figure, ax


def set_style(profile: str | None = None) -> None:
    """Seaborn whitegrid with fixed sizes, fonts and a fixed SVG id salt.

    ``profile`` (the notebook's ``profile`` parameter) is remembered as ``savefig``'s
    default, so every figure of a quick run carries the smoke-test mark.
    """
    global _profile
    _profile = profile
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    mpl.rcParams.update(
        {
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "pdf.fonttype": 42,  # embed TrueType, editable text
            "svg.fonttype": "none",
            "svg.hashsalt": "twin-study",  # deterministic element ids
            "axes.titlesize": "medium",
        }
    )


def savefig(
    fig: Figure,
    name: str,
    out_dir: Path | str,
    formats: Iterable[str] = ("png",),
    *,
    dpi: float | None = None,
    profile: str | None = None,
) -> list[Path]:
    """Write ``out_dir/<name>.<fmt>`` for each format; return the paths.

    Each file is rendered in memory with fixed metadata and written atomically; an
    unchanged figure leaves its file untouched. ``profile`` (default: the one given to
    ``set_style``) ``"quick"`` stamps the figure with ``QUICK_MARK`` first (``mark_profile``).
    """
    for fmt in formats:
        if fmt not in _FIXED_METADATA:
            raise ValueError(f"unsupported figure format {fmt!r}; use one of {FORMATS}")
    mark_profile(fig, _profile if profile is None else profile)
    written = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_FIXED_METADATA[fmt])
        written.append(atomic_write_bytes(Path(out_dir) / f"{name}.{fmt}", buf.getvalue()))
    return written


def mark_profile(fig: Figure, profile: str | None) -> bool:
    """Stamp ``fig`` with ``QUICK_MARK`` across its middle when ``profile`` is the quick one
    (CI-sized runs: a smoke test, not a result); any other profile, or None, leaves it as it
    is. Idempotent: a figure saved twice carries one mark. Returns whether ``fig`` is marked.
    """
    marked = any(t.get_gid() == _MARK_GID for t in fig.texts)
    if profile != paths.QUICK or marked:
        return marked
    width, height = fig.get_size_inches() * 72.0  # points
    size = min(0.12 * height, 1.6 * width / len(QUICK_MARK))
    fig.text(
        0.5, 0.5, QUICK_MARK, ha="center", va="center", rotation=15, fontsize=size,
        fontweight="bold", color="tab:red", alpha=0.3, zorder=1000, gid=_MARK_GID,
    )  # fmt: skip
    return True
