"""twin-study command line: version, subcommand registry, exit codes of `run`."""

from __future__ import annotations

import importlib

import pytest
from conftest import DEFAULT_PARAMS, write_notebook

from twin_study import __version__, cli, paths


@pytest.fixture
def cli_study(study, monkeypatch):
    """Point the package's default root and profiles at the scratch study."""
    monkeypatch.setattr(paths, "REPO_ROOT", study)
    monkeypatch.setattr(paths, "PROFILES_DIR", study / "profiles")
    (study / "profiles" / "paper.yaml").write_text("01_tiny: {n: 9}\n")
    write_notebook(study / "notebooks" / "01_tiny.ipynb", DEFAULT_PARAMS + "n: int = 3\n")
    write_notebook(study / "notebooks" / "02_other.ipynb")
    return study


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"twin-study {__version__}"


def test_subcommands_expose_the_hooks():
    for module_name, _help in cli.SUBCOMMANDS.values():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.main)


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([])
    assert exit_.value.code == 2


def test_run_only_unknown_exits_2(cli_study, capsys):
    assert cli.main(["run", "--only", "01", "05_missing"]) == 2
    err = capsys.readouterr().err
    assert "unknown notebook(s): 05_missing" in err and "available: 01_tiny, 02_other" in err
    assert not (cli_study / "outputs").exists()


def test_run_unknown_param_exits_2(cli_study, capsys):
    assert cli.main(["run", "--only", "01", "-p", "seed=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) 'seed': no selected notebook has it (01_tiny.ipynb:" in err


def test_run_unknown_profile_exits_2(cli_study, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--profile", "nightly"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nightly'" in capsys.readouterr().err


def test_list_shows_state_and_overrides(cli_study, capsys):
    assert cli.main(["run", "--list", "--profile", "paper"]) == 0
    out = capsys.readouterr().out
    assert "01_tiny" in out and "to run" in out and "n=9" in out and "02_other" in out


def test_list_takes_extra_parameters(cli_study, capsys):
    assert cli.main(["run", "--list", "-p", "n=4"]) == 0
    out = capsys.readouterr().out
    assert "n=4" in out and "-p n is not a parameter of 02_other" in out
    assert cli.main(["run", "--list", "-p", "seed=1"]) == 2
