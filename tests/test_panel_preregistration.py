"""The panel's pre-registration, read from git history: panel.yaml landed before any panel
result, and the declaration the first results were made under is the one in force now (a
change after results exist must keep the old results beside the new ones, and this test
says so by failing)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from twin_study import paths
from twin_study.panel.spec import parse_panel

PANEL = "twin_study/panel/panel.yaml"
RESULTS = "figures/08_panel"


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(paths.REPO_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def history() -> None:
    try:
        if git("rev-parse", "--is-shallow-repository") == "true":
            pytest.skip("a shallow clone has no history to read")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")


def first_commit(path: str) -> str:
    commits = git("log", "--format=%H", "--reverse", "--", path).splitlines()
    return commits[0] if commits else ""


def test_the_declaration_landed_before_any_result(history):
    declared, results = first_commit(PANEL), first_commit(RESULTS)
    assert declared, f"{PANEL} is not in the history"
    if not results:
        pytest.skip("no panel result committed yet")
    # The declaration's first commit is a strict ancestor of the first result's.
    assert declared != results
    subprocess.run(["git", "-C", str(paths.REPO_ROOT), "merge-base", "--is-ancestor",
                    declared, results], check=True)  # fmt: skip
    touched = git("show", "--name-only", "--format=", declared).splitlines()
    assert touched == [PANEL], f"the declaration's commit must hold it alone: {touched}"


def test_results_were_made_under_the_declaration_in_force(history):
    results = first_commit(RESULTS)
    if not results:
        pytest.skip("no panel result committed yet")
    then = parse_panel(yaml.safe_load(git("show", f"{results}:{PANEL}")))
    now = parse_panel(yaml.safe_load((paths.REPO_ROOT / PANEL).read_text()))
    assert [w.name for w in then.worlds] == [w.name for w in now.worlds]
    for w in now.worlds:
        assert then.digest(then.world(w.name)) == now.digest(w), w.name
