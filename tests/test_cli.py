"""twin-study command line: version, subcommand registry, exit codes of `run`."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

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


# The least each subcommand parses without a usage error.
MINIMAL_ARGV = {"data": ["list"]}


@pytest.mark.parametrize("name", sorted(cli.SUBCOMMANDS))
def test_each_subcommand_parses_its_options_and_runs_its_main(name, capsys, monkeypatch):
    module = importlib.import_module(cli.SUBCOMMANDS[name][0])
    own = argparse.ArgumentParser(prog=f"twin-study {name}")
    module.add_arguments(own)
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: twin-study {name}")
    declared = []  # its options, and the actions of a nested command (data list, ...)
    for action in own._actions:
        declared += action.option_strings
        declared += list(action.choices or {}) if action.nargs == argparse.PARSER else []
    assert declared and all(word in shown for word in declared), (declared, shown)
    # The parsed arguments reach the module's main, whose return value is the exit code.
    seen = []
    monkeypatch.setattr(module, "main", lambda args: seen.append(args) or 42)
    assert cli.main([name, *MINIMAL_ARGV.get(name, [])]) == 42
    assert len(seen) == 1 and seen[0].command == name


def test_building_one_command_imports_only_its_module():
    """The lazy registry: `twin-study run` pays neither for torch nor for the other commands."""
    others = sorted(m for n, (m, _) in cli.SUBCOMMANDS.items() if n != "run")
    code = (
        "import json, sys\n"
        "from twin_study import cli\n"
        "cli.build_parser('run')\n"
        f"print(json.dumps([m for m in ['torch', *{others!r}] if m in sys.modules]))\n"
        "print(cli.SUBCOMMANDS['run'][0] in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, runner_loaded = done.stdout.splitlines()
    assert json.loads(loaded) == [] and runner_loaded == "True"


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
