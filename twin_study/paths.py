"""Where everything lives. Notebooks and code resolve paths here, never relative to cwd.

nbval executes a notebook in the notebook's folder and papermill in the caller's, so a path
like ``"../figures"`` means different things depending on who runs it. Everything below is
anchored at the repository checkout that contains the package (an editable install), or at
``$TWIN_STUDY_ROOT`` when that is set.

Functions take an optional ``root`` so that the runner and its tests can work on a scratch
copy of the layout (``root/notebooks``, ``root/figures``, ``root/outputs``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROFILES_DIR = PACKAGE_DIR / "profiles"

REPO_ROOT = Path(os.environ.get("TWIN_STUDY_ROOT") or PACKAGE_DIR.parent).resolve()
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
FIGURES_DIR = REPO_ROOT / "figures"  # paper-profile outputs, committed
OUTPUTS_DIR = REPO_ROOT / "outputs"  # everything else, git-ignored

QUICK = "quick"  # CI-sized defaults saved in the notebooks: no overrides, no file needed
PAPER = "paper"  # full scale; writes into the committed figures/ folder


def _root(root: Path | str | None) -> Path:
    return REPO_ROOT if root is None else Path(root).resolve()


def notebooks_dir(root: Path | str | None = None) -> Path:
    """The notebooks folder; a clear error when the package runs without its checkout."""
    path = _root(root) / "notebooks"
    if not path.is_dir():
        raise FileNotFoundError(
            f"no notebooks folder at {path}. twin_study finds its notebooks next to the "
            "package, so install the repository checkout in editable mode "
            "(pip install -e .) or set TWIN_STUDY_ROOT to the checkout."
        )
    return path


def available_profiles() -> list[str]:
    """``quick`` plus every ``twin_study/profiles/<name>.yaml``, sorted."""
    return sorted({QUICK} | {p.stem for p in PROFILES_DIR.glob("*.yaml")})


def check_profile(profile: str) -> str:
    """Return ``profile`` or raise ValueError naming the allowed profiles."""
    allowed = available_profiles()
    if profile not in allowed:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(allowed)}")
    return profile


def notebook_stem(notebook: str | Path) -> str:
    """``"01_complexity.ipynb"``, a path to it, or ``"01_complexity"`` -> ``"01_complexity"``."""
    name = Path(notebook).name
    return name.removesuffix(".ipynb")


def executed_dir(profile: str, root: Path | str | None = None) -> Path:
    """Executed notebook copies and run stamps: ``outputs/executed/<profile>``."""
    return _root(root) / "outputs" / "executed" / check_profile(profile)


def output_dir(profile: str, notebook: str | Path, root: Path | str | None = None) -> Path:
    """Figures and results.json of one notebook run.

    ``figures/<notebook>`` for the paper profile (committed, referenced from README.md),
    ``outputs/<profile>/<notebook>`` for any other profile (git-ignored).
    """
    stem = notebook_stem(notebook)
    if check_profile(profile) == PAPER:
        return _root(root) / "figures" / stem
    return _root(root) / "outputs" / profile / stem


def cache_dir() -> Path:
    """Downloaded and preprocessed data: ``$TWIN_STUDY_CACHE`` or ``~/.cache/twin-study``."""
    env = os.environ.get("TWIN_STUDY_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "twin-study"
    path.mkdir(parents=True, exist_ok=True)
    return path


# What a checkout's package folder holds besides its sources: build artefacts and caches.
_NOT_SOURCE_SUFFIXES = {".pyc", ".pyo", ".pyd", ".so", ".o", ".dylib", ".dll"}
# The native kernels' sources (twin_study/models/*.cpp, common.h).
KERNEL_SUFFIXES = {".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".cu"}


def package_sources(package_dir: Path | None = None) -> list[Path]:
    """Every file of the package that can change a result, sorted: Python, the C++ kernels and
    their header, the yaml profiles and panel declaration, any data file added later. Left
    out: ``__pycache__`` and hidden files or folders (editor swap files, checkpoints), build
    artefacts (``.so``, ``.o``, ``.pyc``) and backups ending in ``~``. ``package_dir``
    defaults to ``PACKAGE_DIR`` as it is at call time (tests point it at a scratch copy)."""
    root = PACKAGE_DIR if package_dir is None else Path(package_dir)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") or part == "__pycache__"
                    for part in p.relative_to(root).parts)
        and p.suffix not in _NOT_SOURCE_SUFFIXES
        and not p.name.endswith("~")
    )  # fmt: skip


def digest_files(files: Iterable[Path], root: Path) -> str:
    """sha256 over ``files`` (each one's path relative to ``root``, then its content)."""
    h = hashlib.sha256()
    for path in files:
        h.update(Path(path).relative_to(root).as_posix().encode() + b"\0")
        h.update(Path(path).read_bytes() + b"\0")
    return h.hexdigest()
