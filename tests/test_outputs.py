"""What a notebook run writes: results.json (atomic, plain JSON) and figure files (stable)."""

from __future__ import annotations

import json
import os

import matplotlib
import numpy as np
import pytest

from twin_study import paths
from twin_study.results import atomic_write_bytes, load_results, resolve_out_dir, save_results

matplotlib.use("Agg")


def test_save_results_converts_numpy_and_sorts(tmp_path):
    path = save_results(
        tmp_path,
        {
            "b": np.float32(0.5),
            "a": np.int64(3),
            "arr": np.arange(3),
            "flag": np.bool_(True),
            "nested": {np.int64(2): (1, 2)},
        },
    )
    text = path.read_text()
    assert list(json.loads(text)) == ["a", "arr", "b", "flag", "nested"]
    assert load_results(tmp_path) == {
        "a": 3,
        "arr": [0, 1, 2],
        "b": 0.5,
        "flag": True,
        "nested": {"2": [1, 2]},
    }
    assert text.startswith('{\n  "a": 3,')


def test_save_results_is_atomic(tmp_path, monkeypatch):
    save_results(tmp_path, {"auc": 0.7})

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_results(tmp_path, {"auc": 0.8})
    assert load_results(tmp_path) == {"auc": 0.7}  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp left behind
    with pytest.raises(ValueError, match="finite"):
        save_results(tmp_path, {"auc": float("nan")})


def test_resolve_out_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)
    assert resolve_out_dir("01_x", "quick") == tmp_path / "outputs" / "quick" / "01_x"
    assert resolve_out_dir("01_x.ipynb", "paper") == tmp_path / "figures" / "01_x"
    assert resolve_out_dir("01_x", "quick", str(tmp_path / "o")) == tmp_path / "o"
    assert (tmp_path / "o").is_dir()
    with pytest.raises(ValueError, match=r"unknown profile 'full'; allowed: paper, quick"):
        resolve_out_dir("01_x", "full")


def test_savefig_is_byte_stable(tmp_path):
    import matplotlib.pyplot as plt

    from twin_study.plots.base import savefig, set_style

    set_style()

    def draw():
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [0.6, 0.7, 0.65], label="auc")
        ax.set_title("stable")
        ax.legend()
        return fig

    formats = ("png", "pdf", "svg")
    first = [p.read_bytes() for p in savefig(draw(), "fig", tmp_path / "a", formats)]
    second = [p.read_bytes() for p in savefig(draw(), "fig", tmp_path / "b", formats)]
    assert first == second
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["fig.pdf", "fig.png", "fig.svg"]
    plt.close("all")
    with pytest.raises(ValueError, match="unsupported figure format"):
        savefig(draw(), "fig", tmp_path, ("eps",))


def _draw():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [0.6, 0.7, 0.65])
    return fig


def _marks(fig) -> list[str]:
    from twin_study.plots.base import QUICK_MARK

    return [t.get_text() for t in fig.texts if t.get_text() == QUICK_MARK]


@pytest.mark.parametrize(("profile", "marked"), [("quick", True), ("paper", False), (None, False)])
def test_savefig_marks_quick_profile_figures(tmp_path, profile, marked):
    """A quick-profile figure carries a visible "quick profile: smoke test" mark, in the figure
    and in the file written; a paper-profile figure (the committed ones) does not."""
    import matplotlib.pyplot as plt

    from twin_study.plots.base import QUICK_MARK, savefig, set_style

    set_style()
    fig = _draw()
    (svg,) = savefig(fig, "fig", tmp_path, ("svg",), profile=profile)  # svg keeps text as text
    assert _marks(fig) == ([QUICK_MARK] if marked else [])
    assert (QUICK_MARK in svg.read_text()) == marked
    savefig(fig, "fig", tmp_path, ("svg",), profile=profile)  # saved twice: still one mark
    assert len(_marks(fig)) == int(marked)
    plt.close("all")


def test_set_style_profile_is_savefigs_default(tmp_path):
    """Notebooks pass their ``profile`` parameter once, to set_style; savefig follows it, and
    an explicit ``profile=`` wins."""
    import matplotlib.pyplot as plt

    from twin_study.plots.base import savefig, set_style

    try:
        set_style("quick")
        fig = _draw()
        savefig(fig, "quick", tmp_path)
        assert len(_marks(fig)) == 1
        fig = _draw()
        savefig(fig, "paper", tmp_path, profile="paper")
        assert _marks(fig) == []
        set_style("paper")
        fig = _draw()
        savefig(fig, "paper2", tmp_path)
        assert _marks(fig) == []
        # The mark changes the pixels, not just the figure object.
        assert (tmp_path / "quick.png").read_bytes() != (tmp_path / "paper.png").read_bytes()
    finally:
        set_style()
        plt.close("all")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = save_results(tmp_path, {"auc": 0.7})
        table = atomic_write_bytes(tmp_path / "table.md", b"| a |\n")
    finally:
        os.umask(old)
    for p in (path, table):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, oct(p.stat().st_mode)


def test_rewrite_keeps_the_existing_mode(tmp_path):
    path = save_results(tmp_path, {"auc": 0.7})
    path.chmod(0o640)
    save_results(tmp_path, {"auc": 0.8})
    assert path.stat().st_mode & 0o777 == 0o640
    assert load_results(tmp_path) == {"auc": 0.8}
