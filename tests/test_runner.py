"""twin_study.runner: selection, parameter validation, execution, up-to-date stamps."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import DEFAULT_PARAMS, write_notebook

from twin_study import paths, runner
from twin_study.results import load_results

# A body cell that records its parameters and where it ran.
RECORD = (
    "import os\n"
    "from twin_study.results import resolve_out_dir, save_results\n"
    "out = resolve_out_dir('01_tiny', profile, out_dir)\n"
    "save_results(out, {'n': n, 'profile': profile, 'cwd': os.getcwd()})"
)
TINY_PARAMS = DEFAULT_PARAMS + "n: int = 3  # a size\n"


def _paper(study: Path, text: str) -> None:
    (study / "profiles" / "paper.yaml").write_text(text)


def test_discover_and_select(study):
    for name in ("00_data", "01_complexity", "02_accuracy"):
        write_notebook(study / "notebooks" / f"{name}.ipynb")
    (study / "notebooks" / "scratch.ipynb").write_text("{}")  # not NN_*: ignored
    nbs = runner.discover(study / "notebooks")
    assert [nb.stem for nb in nbs] == ["00_data", "01_complexity", "02_accuracy"]
    picked = runner.select(nbs, ["02_accuracy.ipynb", "00", "01_complexity"])
    assert [nb.stem for nb in picked] == ["00_data", "01_complexity", "02_accuracy"]
    assert runner.select(nbs, None) == nbs
    with pytest.raises(runner.RunnerError, match=r"unknown notebook\(s\): 7.*available: 00_data"):
        runner.select(nbs, ["01", "7"])


def test_unknown_override_fails_before_anything_runs(study):
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS, "1/0")
    write_notebook(study / "notebooks" / "02_next.ipynb")
    _paper(study, "02_next: {n_users: 5}\n")
    with pytest.raises(runner.RunnerError) as err:
        runner.run("paper", root=study, profiles_dir=study / "profiles")
    msg = str(err.value)
    assert "02_next.ipynb" in msg and "'n_users'" in msg and "allowed: profile, out_dir" in msg
    assert not (study / "outputs").exists()  # 01_tiny (which would fail) never started


@pytest.mark.parametrize(
    ("extra", "profile_yaml", "match"),
    [
        (
            {"m": 1},
            "",
            r"unknown parameter\(s\) 'm': no selected notebook has it "
            r"\(01_tiny.ipynb: profile, out_dir, n\)",
        ),
        ({"n": "1e4"}, "", r"parameter 'n' is int, got str '1e4'"),
        ({}, "01_tiny: {n: 2.5}\n", r"parameter 'n' is int, got float"),
        ({}, "03_gone: {n: 1}\n", r"names unknown notebook\(s\): 03_gone; available: 01_tiny"),
        ({}, "[1, 2]\n", r"expected a mapping"),
    ],
)
def test_bad_parameters_are_usage_errors(study, extra, profile_yaml, match):
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS)
    _paper(study, profile_yaml)
    with pytest.raises(runner.RunnerError, match=match):
        runner.run("paper", extra=extra, root=study, profiles_dir=study / "profiles")


def test_notebook_must_declare_required_parameters(study):
    write_notebook(study / "notebooks" / "01_a.ipynb", 'profile: str = "quick"\n')
    with pytest.raises(runner.RunnerError, match=r"01_a.ipynb: .*must define out_dir"):
        runner.run(root=study)
    write_notebook(study / "notebooks" / "01_a.ipynb", "")
    with pytest.raises(runner.RunnerError, match=r"no code cell tagged 'parameters'"):
        runner.run(root=study)


def test_parameter_line_papermill_cannot_read(study):
    params = DEFAULT_PARAMS + 'mode: str = "a"  # "a" or mode="b"\n'
    write_notebook(study / "notebooks" / "01_a.ipynb", params)
    with pytest.raises(runner.RunnerError, match=r"cannot read parameter\(s\) mode; write each"):
        runner.run(root=study)


def test_parse_assignments():
    got = runner.parse_assignments(["n=7", "lr=1.0e-3", "name=abc", "lens=[1, 2]", "flag=true"])
    assert got == {"n": 7, "lr": 0.001, "name": "abc", "lens": [1, 2], "flag": True}
    with pytest.raises(runner.RunnerError, match="NAME=VALUE"):
        runner.parse_assignments(["n"])


def test_run_injects_profile_then_skips_until_forced(study, capsys):
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS, RECORD)
    _paper(study, "01_tiny: {n: 7}\n")
    kw = dict(root=study, profiles_dir=study / "profiles", progress=False)

    summary = runner.run("paper", **kw)
    assert summary.ok and [o.status for o in summary.outcomes] == ["ran"]
    out = paths.output_dir("paper", "01_tiny", study)
    assert out == study / "figures" / "01_tiny"
    got = load_results(out)
    assert got["n"] == 7 and got["profile"] == "paper"
    assert Path(got["cwd"]) == (study / "notebooks").resolve()  # papermill cwd = notebooks/
    executed = paths.executed_dir("paper", study)
    assert sorted(p.name for p in executed.iterdir()) == ["01_tiny.ipynb", "01_tiny.stamp.json"]
    assert json.loads((executed / "01_tiny.stamp.json").read_text())["parameters"]["n"] == 7

    summary = runner.run("paper", **kw)
    assert [o.status for o in summary.outcomes] == ["skipped"]
    assert "01_tiny  skipped  up to date" in capsys.readouterr().out

    # A changed parameter or a missing results.json makes the stamp stale, without running.
    jobs = runner.plan(
        runner.discover(study / "notebooks"), "paper", root=study, profiles_dir=study / "profiles"
    )
    digest = runner.job_digest(jobs[0], runner.package_digest())
    assert runner.is_up_to_date(jobs[0], digest)
    jobs[0].parameters["n"] = 8
    assert not runner.is_up_to_date(jobs[0], runner.job_digest(jobs[0], runner.package_digest()))
    (out / "results.json").unlink()
    assert not runner.is_up_to_date(jobs[0], digest)

    summary = runner.run("paper", force=True, **kw)
    assert [o.status for o in summary.outcomes] == ["ran"]
    assert load_results(out)["n"] == 7
    assert "1 ran, 0 skipped, 0 failed, 0 not run" in capsys.readouterr().out


def _mark_done(study: Path) -> None:
    """Give every planned quick-profile job the stamp and files a successful run leaves."""
    for job in runner.plan(runner.discover(study / "notebooks"), "quick", root=study):
        job.executed.parent.mkdir(parents=True, exist_ok=True)
        job.executed.write_text("{}")
        job.out_dir.mkdir(parents=True, exist_ok=True)
        (job.out_dir / "results.json").write_text("{}")
        stamp = {"sha256": runner.job_digest(job, runner.package_digest())}
        job.stamp_path.write_text(json.dumps(stamp))


@pytest.mark.parametrize(
    "edit, stale",
    [
        ("models/gsu_select.cpp", True),  # a kernel
        ("models/common.h", True),  # the kernels' header
        ("profiles/paper.yaml", True),  # a profile
        ("panel/panel.yaml", True),  # the panel's declaration
        ("models/config.py", True),
        ("data/userlog/read.py", True),  # modules of sub-packages
        ("runner/stamps.py", True),
        ("models/__pycache__/config.cpython-311.pyc", False),  # build artefacts are not sources
        ("models/native_build.so", False),
        ("models/.config.py.swp", False),
    ],
)
def test_an_edited_source_makes_the_notebooks_out_of_date(study, monkeypatch, capsys, edit, stale):
    package = study / "twin_study"
    shutil.copytree(paths.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(paths, "PACKAGE_DIR", package)
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS, RECORD)
    _mark_done(study)
    runner.list_notebooks(root=study)
    assert "01_tiny                  up to date" in capsys.readouterr().out

    target = package / edit
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as f:
        f.write("\n// edited\n")
    runner.list_notebooks(root=study)
    state = "to run" if stale else "up to date"
    assert f"01_tiny                  {state}" in capsys.readouterr().out


def test_failing_notebook_leaves_nothing_marked_done(study, capsys):
    write_notebook(
        study / "notebooks" / "01_bad.ipynb", DEFAULT_PARAMS, "x = 1", "raise ValueError('boom')"
    )
    write_notebook(study / "notebooks" / "02_after.ipynb")
    summary = runner.run(root=study, progress=False)
    assert not summary.ok
    assert [(o.stem, o.status) for o in summary.outcomes] == [
        ("01_bad", "failed"),
        ("02_after", "not run"),
    ]
    assert "ValueError: boom" in summary.outcomes[0].error
    executed = paths.executed_dir("quick", study)
    assert sorted(p.name for p in executed.iterdir()) == ["01_bad.failed.ipynb"]
    out = capsys.readouterr().out
    assert "01_bad    FAILED" in out and "ValueError: boom" in out and "02_after  not run" in out


def test_timeout_is_per_profile_and_reaches_papermill(study, monkeypatch):
    # quick cells take a minute at most: 30 min catches a hung kernel; a paper sweep is one
    # cell that trains tens of models for an hour or more, so it has no limit unless asked.
    assert runner.resolve_timeout("quick", None) == runner.DEFAULT_TIMEOUT
    assert runner.resolve_timeout("paper", None) is None
    assert runner.resolve_timeout("paper", 0) is None
    assert runner.resolve_timeout("paper", 60) == 60.0
    with pytest.raises(runner.RunnerError, match="--timeout must be >= 0"):
        runner.resolve_timeout("quick", -1)

    # What run() resolves is what papermill gets (no kernel started: a real kernel killed
    # mid-cell can leave a dying process that writes to the next test's stderr).
    import papermill

    seen = []

    def fake_execute(src, dst, *, execution_timeout, **kw):
        seen.append(execution_timeout)
        Path(dst).write_text(Path(src).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    write_notebook(study / "notebooks" / "01_tiny.ipynb")
    _paper(study, "")
    kw = dict(root=study, profiles_dir=study / "profiles", progress=False, force=True)
    for profile, timeout, expected in [
        ("quick", None, runner.DEFAULT_TIMEOUT),
        ("paper", None, None),
        ("paper", 120, 120.0),
        ("quick", 0, None),
    ]:
        runner.run(profile, timeout=timeout, **kw)
        assert seen.pop() == expected, (profile, timeout)
    with pytest.raises(runner.RunnerError, match="--timeout"):
        runner.run("quick", timeout=-5, **kw)
    assert seen == []


def test_extra_goes_to_the_notebooks_that_declare_it(study, capsys):
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS, RECORD)
    write_notebook(study / "notebooks" / "02_plain.ipynb")
    jobs = runner.plan(runner.discover(study / "notebooks"), "quick", root=study, extra={"n": 5})
    assert jobs[0].parameters["n"] == 5 and jobs[0].not_applied == ()
    assert "n" not in jobs[1].parameters and jobs[1].not_applied == ("n",)
    # still type-checked where it applies, and an error when no selected notebook has it
    with pytest.raises(runner.RunnerError, match=r"parameter 'n' is int, got str"):
        runner.plan(runner.discover(study / "notebooks"), "quick", root=study, extra={"n": "x"})
    with pytest.raises(runner.RunnerError, match=r"'n': no selected notebook has it"):
        runner.run(only=["02"], extra={"n": 5}, root=study)
    summary = runner.run(extra={"n": 5}, root=study)
    assert [o.status for o in summary.outcomes] == ["ran", "ran"]
    assert load_results(paths.output_dir("quick", "01_tiny", study))["n"] == 5
    assert "-p n is not a parameter of 02_plain: not applied there" in capsys.readouterr().out


def test_list_honours_extra_parameters(study, capsys):
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS, RECORD)
    assert runner.run(extra={"n": 7}, root=study).ok
    capsys.readouterr()
    runner.list_notebooks(root=study, extra={"n": 7})
    assert re.search(r"01_tiny +up to date +n=7", capsys.readouterr().out)
    runner.list_notebooks(root=study)  # the saved default n = 3 was never run
    assert re.search(r"01_tiny +to run", capsys.readouterr().out)
    runner.list_notebooks(root=study, extra={"n": 8})
    assert re.search(r"01_tiny +to run +n=8", capsys.readouterr().out)


def test_failed_rerun_keeps_the_last_good_executed_copy(study):
    body = RECORD + "\nif n == 0:\n    raise ValueError('n must be positive')"
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS, body)
    assert runner.run(root=study).ok
    executed = paths.executed_dir("quick", study)
    good = (executed / "01_tiny.ipynb").read_bytes()
    summary = runner.run(root=study, extra={"n": 0})
    assert not summary.ok and "n must be positive" in summary.outcomes[0].error
    assert (executed / "01_tiny.ipynb").read_bytes() == good  # the good run's copy, untouched
    assert (executed / "01_tiny.failed.ipynb").is_file()
    assert not (executed / "01_tiny.stamp.json").exists()  # nothing claims to be up to date
    assert sorted(p.name for p in executed.iterdir()) == [
        "01_tiny.failed.ipynb",
        "01_tiny.ipynb",
    ]


def test_run_is_quiet_one_line_per_notebook(study, capfd):
    write_notebook(study / "notebooks" / "01_tiny.ipynb", TINY_PARAMS, RECORD)
    write_notebook(study / "notebooks" / "02_plain.ipynb")
    assert runner.run(root=study).ok
    out, err = capfd.readouterr()  # fd level: includes what the kernel process writes
    assert "without encryption" not in out + err and "Executing" not in err, err
    assert err == ""
    lines = out.strip().splitlines()
    assert re.fullmatch(r"  01_tiny   ran +\d+\.\d s", lines[1]), lines
    assert re.fullmatch(r"  02_plain  ran +\d+\.\d s", lines[2]), lines
    assert len(lines) == 4


# --- users' own logs in the notebooks --------------------------------------------------------

DATA_PARAMS = (
    DEFAULT_PARAMS
    + 'dataset: str = "synthetic"  # data set(s)\n'
    + 'userlog_path: str = ""  # log\n'
    + 'userlog_spec: str = ""  # spec\n'
    + "userlog_params: dict = {}  # options\n"
)


@pytest.fixture
def click_log(tmp_path: Path) -> tuple[Path, Path]:
    from logs import write_click_log

    return write_click_log(tmp_path / "mylog", n_users=30, per_user=150, impressions_per_user=40)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"dataset": "userlog"}, r"01_data.ipynb: userlog: userlog needs path="),
        ({"dataset": "synthetic,userlg"}, r"unknown data set\(s\) userlg; available: "),
        ({"userlog_path": "nope.csv"}, r"userlog: log file .*nope.csv does not exist"),
        ({"userlog_spec": "nope.yaml"}, r"userlog: spec file .*nope.yaml does not exist"),
        ({"userlog_params": {"max_user": 5}}, r"unknown userlog parameter\(s\) \['max_user'\]"),
        ({"userlog_params": {"split": "random"}}, r"split must be one of"),
        ({"userlog_params": [1]}, r"userlog_params must be a mapping"),
    ],
)
def test_userlog_problems_fail_before_anything_runs(study, click_log, extra, match):
    write_notebook(study / "notebooks" / "01_data.ipynb", DATA_PARAMS, "1/0")
    log, spec = click_log
    good = {"dataset": "userlog", "userlog_path": str(log), "userlog_spec": str(spec)}
    with pytest.raises(runner.RunnerError, match=match):
        runner.run(extra=good | extra if "dataset" not in extra else extra, root=study)
    assert not (study / "outputs").exists()


def test_userlog_needs_a_notebook_that_takes_one(study, click_log):
    write_notebook(study / "notebooks" / "01_data.ipynb", DEFAULT_PARAMS + 'dataset: str = "a"\n')
    with pytest.raises(runner.RunnerError, match=r"01_data.ipynb: data set 'userlog' needs the"):
        runner.run(extra={"dataset": "userlog"}, root=study)


def test_the_real_notebooks_check_userlog_up_front():
    """The issue's case: `--only 03 -p dataset=userlog` used to fail inside the notebook."""
    nbs = runner.select(runner.discover(paths.NOTEBOOKS_DIR), ["02", "03", "04", "05"])
    for extra in ({"dataset": "userlog"}, {"datasets": ["userlog"]}):
        with pytest.raises(runner.RunnerError, match=r"userlog needs path="):
            runner.plan(nbs, "quick", extra=extra)


def test_notebooks_02_to_05_run_on_a_users_log(tmp_path, click_log, monkeypatch):
    """End to end: a behaviours + impressions log written here, given with paths relative to
    the caller's folder, through notebooks 02-05 at a tiny size."""
    root = tmp_path / "study"
    (root / "notebooks").mkdir(parents=True)
    for nb in runner.select(runner.discover(paths.NOTEBOOKS_DIR), ["02", "03", "04", "05"]):
        (root / "notebooks" / nb.path.name).write_bytes(nb.path.read_bytes())
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path / "cache"))  # the kernels inherit it
    monkeypatch.chdir(tmp_path)
    extra = {
        "dataset": "userlog",
        "datasets": ["userlog"],
        "userlog_path": "mylog/log.csv",
        "userlog_spec": "mylog/spec.yaml",
        "userlog_params": {"min_history": 5, "split": "per_user"},
        "long_len": 150,
        "k": 20,
        "seq_lens": [20, 150],
        "k_values": [10, 20],
        "n_eval": 30,
        "refresh_intervals": [0, 2],
    }
    summary = runner.run(extra=extra, root=root)
    assert summary.ok, [o.error for o in summary.outcomes]
    for nb in ("02_consistency", "03_main_results", "04_sequence_length", "05_ablations"):
        got = load_results(paths.output_dir("quick", nb, root))
        assert got["datasets"] == (["userlog"] if nb == "02_consistency" else ["log"]), nb
    table = load_results(paths.output_dir("quick", "03_main_results", root))["table"]
    assert "log" in json.dumps(table)
