"""The README is a landing page and the manual lives in docs/: the README stays short, links
every page of docs/, and every relative link or image in either resolves (file and anchor)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twin_study import paths

ROOT = paths.REPO_ROOT
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 300
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters,
    hyphens and spaces kept), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text())) if not re.match(r"[a-z]+:", t)]


def test_slug_matches_githubs_anchors() -> None:
    assert slug("Many runs at once: `--jobs` and `--dask`") == "many-runs-at-once---jobs-and---dask"
    assert slug("08 — The panel of worlds: TWIN against each rival, across worlds") == (
        "08--the-panel-of-worlds-twin-against-each-rival-across-worlds"
    )


def test_the_readme_is_a_landing_page() -> None:
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move detail into docs/"


def test_the_readme_links_every_page_of_docs() -> None:
    assert DOCS, "no docs/*.md"
    targets = {(ROOT / t.split("#")[0]).resolve() for t in links(README)}
    unlinked = [p.name for p in DOCS if p.resolve() not in targets]
    assert not unlinked, f"README.md does not link {unlinked}"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page.resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: " + "; ".join(broken)
