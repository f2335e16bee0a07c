"""`twin-study report`: the results section (README.md, or docs/results.md beside it) and the
README's headline rebuilt from fixture paper-profile outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from twin_study import cli, report
from twin_study.results import save_results

README = """# project

Intro text.

## Results

{START}
stale text that the report replaces
{END}

## After

Text after the section stays.
"""


def notebook(path: Path, title: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nBody."),
                nbformat.v4.new_code_cell("x = 1")]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """README with markers; figures/ for 03 (claims, a table, a figure) and 01 (scalars
    only); notebooks 01, 03 and 04 (04 has no results yet)."""
    (tmp_path / "README.md").write_text(README.format(START=report.START, END=report.END))
    nbs = tmp_path / "notebooks"
    notebook(nbs / "01_complexity.ipynb", "01 — Complexity")
    notebook(nbs / "03_main_results.ipynb", "03 — Main results: the paper's Table 4")
    notebook(nbs / "04_sequence_length.ipynb", "04 — Sequence length")
    figs = tmp_path / "figures"
    claims = [
        {"claim": "TWIN > SIM Soft (GAUC)", "dataset": "synthetic", "verdict": "reproduced",
         "effect": 0.0123, "spread": 0.002, "n_seeds": 3, "relative_pct": 1.8,
         "detail": "TWIN − SIM Soft"},
        {"claim": "Table 4 order (GAUC)", "dataset": "synthetic", "verdict": "partly",
         "effect": 0.5, "spread": None, "n_seeds": 3, "relative_pct": None,
         "detail": "6/8 adjacent pairs in order"},
    ]  # fmt: skip
    save_results(figs / "03_main_results", {"table": {"synthetic": {}}, "claims": claims})
    (figs / "03_main_results" / "table4_synthetic.md").write_text(
        "**Table 4 — synthetic**\n\n| model | gauc |\n| --- | --- |\n| TWIN | 0.7000 |\n"
    )
    (figs / "03_main_results" / "table4_synthetic.png").write_bytes(b"\x89PNG fake")
    save_results(figs / "01_complexity", {"flops_ratio": 0.0071, "n": 10000, "name": "x"})
    return tmp_path


def update(root: Path, check: bool = False) -> bool:
    return report.update_readme(root / "README.md", root / "figures", root / "notebooks", check)


def test_section_is_rebuilt_between_the_markers(layout: Path):
    assert update(layout) is True
    text = (layout / "README.md").read_text()
    head, rest = text.split(report.START)
    body, tail = rest.split(report.END)
    assert head.startswith("# project\n\nIntro text.\n\n## Results\n\n")
    assert tail == "\n\n## After\n\nText after the section stays.\n"
    assert "stale text" not in body
    # titles from the notebooks, in notebook order
    i01 = body.index("### 01 — Complexity")
    i03 = body.index("### 03 — Main results: the paper's Table 4")
    i04 = body.index("### 04 — Sequence length")
    assert i01 < i03 < i04
    # 03: its table as written, its claims as a verdict table, its figure linked relatively
    assert "| TWIN | 0.7000 |" in body
    row = ("| TWIN > SIM Soft (GAUC) | synthetic | paper | **reproduced** | +0.0123 (+1.80 %) | "
           "0.0020 | 3 |")  # fmt: skip
    assert row in body
    assert "| Table 4 order (GAUC) | synthetic | paper | **partly** | +0.5000 |  | 3 |" in body
    png = "figures/03_main_results/table4_synthetic.png"
    assert f"![03_main_results: table4_synthetic]({png})" in body
    assert "**The paper's claims** as checked here, each counted once per data set: " \
           "1 reproduced, 1 partly (of 2)" in body  # fmt: skip
    # 01 has neither claims nor tables: its scalars
    assert "- `flops_ratio`: 0.0071" in body and "- `n`: 10,000" in body
    # 04 has no results yet: said so, with the command that makes them
    assert "No paper-profile results yet: run `twin-study run --profile paper --only 04`" in body
    assert report.missing(layout / "figures", layout / "notebooks") == ["04_sequence_length"]


def test_regenerating_is_idempotent(layout: Path):
    update(layout)
    first = (layout / "README.md").read_bytes()
    assert update(layout) is False
    assert (layout / "README.md").read_bytes() == first


def test_check_mode_reports_without_writing(layout: Path):
    before = (layout / "README.md").read_text()
    assert update(layout, check=True) is True
    assert (layout / "README.md").read_text() == before
    update(layout)
    assert update(layout, check=True) is False


def test_changed_results_change_the_section(layout: Path):
    update(layout)
    res = layout / "figures" / "03_main_results" / "results.json"
    data = json.loads(res.read_text())
    data["claims"][0]["verdict"] = "not reproduced"
    res.write_text(json.dumps(data))
    assert update(layout) is True
    assert "**not reproduced**" in (layout / "README.md").read_text()


def test_no_results_is_a_clear_error(tmp_path: Path):
    (tmp_path / "README.md").write_text(README.format(START=report.START, END=report.END))
    notebook(tmp_path / "notebooks" / "03_main_results.ipynb", "03")
    with pytest.raises(report.ReportError, match=r"twin-study run --profile paper"):
        update(tmp_path)


def test_missing_markers_is_a_clear_error(layout: Path):
    (layout / "README.md").write_text("# project\n\n## Results\n\nno markers\n")
    with pytest.raises(report.ReportError, match="results:start"):
        update(layout)
    (layout / "README.md").write_text(f"{report.END}\n{report.START}\n")  # wrong order
    with pytest.raises(report.ReportError, match="markers"):
        update(layout)


def test_cli(layout: Path, capsys):
    args = ["report", "--readme", str(layout / "README.md"), "--figures",
            str(layout / "figures"), "--notebooks", str(layout / "notebooks")]  # fmt: skip
    assert cli.main([*args, "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert cli.main(args) == 0
    out = capsys.readouterr()
    assert "updated" in out.out and "no paper-profile results for 04_sequence_length" in out.err
    assert cli.main([*args, "--check"]) == 0
    empty = layout / "empty"
    empty.mkdir()
    assert cli.main(["report", "--readme", str(layout / "README.md"), "--figures", str(empty),
                     "--notebooks", str(empty)]) == 1  # fmt: skip
    assert "no paper-profile results" in capsys.readouterr().err


def test_headline_block_is_the_panels_headline(tmp_path: Path) -> None:
    """A README with headline markers gets the panel's generated headline there (and a line
    saying the panel has not run, before it has); --check then passes."""
    text = README.format(START=report.START, END=report.END).replace(
        "## Results\n",
        f"## Results\n\n{report.HEADLINE_START}\nhand-written\n{report.HEADLINE_END}\n",
    )
    (tmp_path / "README.md").write_text(text)
    figs = tmp_path / "figures"
    save_results(figs / "03_main_results", {"claims": []})
    report.update_readme(tmp_path / "README.md", figs)
    assert "has no paper-profile results yet" in (tmp_path / "README.md").read_text()
    save_results(figs / report.PANEL_STEM, {"headline": "**Across the panel's 5 worlds** X.",
                                            "headline_gauc": "Y."})  # fmt: skip
    (figs / report.PANEL_STEM / "effects_auc.png").write_bytes(b"\x89PNG fake")
    assert report.update_readme(tmp_path / "README.md", figs)
    out = (tmp_path / "README.md").read_text()
    block = out.split(report.HEADLINE_START)[1].split(report.HEADLINE_END)[0]
    assert "**Across the panel's 5 worlds** X." in block and "In GAUC: Y." in block
    assert "figures/08_panel/effects_auc.png" in block and "hand-written" not in out
    assert not report.update_readme(tmp_path / "README.md", figs, check=True)


def test_lifecycle_block_states_every_verdict_from_the_numbers(tmp_path: Path) -> None:
    """Notebook 09's README section is generated from its results.json: the AUC table (mean ±
    std), the old-evidence reach, compression and every claim's verdict, failed ones too."""
    text = README.format(START=report.START, END=report.END) + (
        f"\n## Beyond\n\n{report.LIFECYCLE_START}\nhand-written\n{report.LIFECYCLE_END}\n"
    )
    (tmp_path / "README.md").write_text(text)
    figs = tmp_path / "figures"
    save_results(figs / "03_main_results", {"claims": []})
    report.update_readme(tmp_path / "README.md", figs)
    assert "Notebook 09 has no paper-profile results yet" in (tmp_path / "README.md").read_text()
    arms, worlds = ["TWIN, last window", "TWIN-V2"], ["lifecycle", "lifecycle_control"]
    auc = {w: {a: {"auc": {"mean": 0.7 + 0.01 * i, "std": 0.002, "n_seeds": 3}}
               for i, a in enumerate(arms)} for w in worlds}  # fmt: skip
    claim = {"claim": "TWIN-V2 > TWIN on the last window (AUC)", "dataset": "lifecycle",
             "verdict": "not reproduced", "effect": -0.0031, "spread": 0.0012, "n_seeds": 3}
    save_results(figs / report.LIFECYCLE_STEM, {
        "datasets": worlds, "arms": arms, "window": 10_000, "k": 100, "n_seeds": 3,
        "table": auc, "recall": {"recall_old": {"lifecycle": {"TWIN-V2": 0.61}}},
        "auc_by_target": {"auc_dormant": {w: {"TWIN-V2": 0.66} for w in worlds}},
        "cost": {"compression_ratio": {w: {"TWIN-V2": 0.081} for w in worlds},
                 "cluster_s_per_user": {w: {"TWIN-V2": 0.42} for w in worlds}},
        "still_learning": {"lifecycle / TWIN-V2": 2}, "claims": [claim]})  # fmt: skip
    assert report.update_readme(tmp_path / "README.md", figs)
    out = (tmp_path / "README.md").read_text()
    block = out.split(report.LIFECYCLE_START)[1].split(report.LIFECYCLE_END)[0]
    assert "hand-written" not in out and "| TWIN-V2 | 0.7100 ± 0.0020 | 0.7100 ± 0.0020 |" in block
    assert "| 0.6600 | 0.6600 | 0.61 |" in block and "compression ratio lifecycle 0.081" in block
    assert "**not reproduced** (-0.0031 ± 0.0012, 3 seeds)" in block
    assert "Still improving when the budget ended" in block and "TWIN-V2 (2 of 3 seeds)" in block
    assert not report.update_readme(tmp_path / "README.md", figs, check=True)


def test_the_readme_opens_its_results_with_the_generated_headline() -> None:
    from twin_study import paths

    text = (paths.REPO_ROOT / "README.md").read_text()
    after = text.split("\n## Results\n", 1)[1].lstrip("\n")
    assert after.startswith(report.HEADLINE_START)


def test_results_page_beside_the_readme(layout: Path, capsys) -> None:
    """With docs/results.md beside the README, the section goes there (figure links relative
    to docs/), the headline stays in the README (links relative to it), and --check passes."""
    readme = layout / "README.md"
    readme.write_text(f"# project\n\n## Results\n\n{report.HEADLINE_START}\n"
                      f"{report.HEADLINE_END}\n\nMore in docs/results.md.\n")  # fmt: skip
    page = layout / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text(f"# Results\n\n{report.START}\n{report.END}\n")
    figs = layout / "figures"
    save_results(figs / report.PANEL_STEM, {"headline": "**Across** X."})
    (figs / report.PANEL_STEM / "effects_auc.png").write_bytes(b"\x89PNG fake")
    assert report.results_page(readme) == page
    args = ["report", "--readme", str(readme), "--figures", str(figs),
            "--notebooks", str(layout / "notebooks")]  # fmt: skip
    assert cli.main(args) == 0
    assert str(page) in capsys.readouterr().out
    body = page.read_text().split(report.START)[1].split(report.END)[0]
    assert "![03_main_results: table4_synthetic](../figures/03_main_results/table4_synthetic.png)" \
        in body  # fmt: skip
    assert "### 03 — Main results: the paper's Table 4" in body
    text = readme.read_text()
    assert report.START not in text and "**Across** X." in text
    assert "](figures/08_panel/effects_auc.png)" in text
    assert cli.main([*args, "--check"]) == 0
    # the same, named explicitly
    assert not report.update_readme(readme, figs, layout / "notebooks", True, results=page)
    # a README that keeps the section's markers too would hold a stale copy: an error
    readme.write_text(text + f"\n{report.START}\n{report.END}\n")
    with pytest.raises(report.ReportError, match="remove them from the README"):
        update(layout)


def test_the_repositorys_results_live_in_docs() -> None:
    from twin_study import paths

    readme = paths.REPO_ROOT / "README.md"
    assert report.results_page(readme) == paths.REPO_ROOT / "docs" / "results.md"
    assert report.START not in readme.read_text()
