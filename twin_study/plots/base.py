"""Plot style and reproducible figure files (the plot functions are in the sibling modules).

Conventions: plot functions take ``ax=None`` and return the figure; notebooks save with
``savefig(fig, name, out_dir)``, which writes byte-identical files when nothing changed so
rerunning the paper profile does not churn the committed ``figures/`` folder.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import matplotlib as mpl
import seaborn as sns
from matplotlib.figure import Figure

from twin_study.results import atomic_write_bytes

# Metadata matplotlib would otherwise stamp with its version or the current time.
_FIXED_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}
FORMATS = tuple(_FIXED_METADATA)


def set_style() -> None:
    """Seaborn whitegrid with fixed sizes, fonts and a fixed SVG id salt."""
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
) -> list[Path]:
    """Write ``out_dir/<name>.<fmt>`` for each format; return the paths.

    Each file is rendered in memory with fixed metadata and written atomically; an
    unchanged figure leaves its file untouched.
    """
    paths = []
    for fmt in formats:
        if fmt not in _FIXED_METADATA:
            raise ValueError(f"unsupported figure format {fmt!r}; use one of {FORMATS}")
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=_FIXED_METADATA[fmt])
        paths.append(atomic_write_bytes(Path(out_dir) / f"{name}.{fmt}", buf.getvalue()))
    return paths
