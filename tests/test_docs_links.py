"""Every relative link in the README and docs/ points at a file that exists, and every ``#anchor`` at a
heading of that file (GitHub's heading ids), so moving a section never leaves a dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def heading_ids(text: str) -> set[str]:
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces to hyphens
    (a repeated heading gets ``-1``, ``-2``, …)."""
    ids: set[str] = set()
    for m in re.finditer(r"^#{1,6} (.+?)\s*$", _FENCE.sub("", text), re.M):
        base = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        slug, n = base, 0
        while slug in ids:
            n += 1
            slug = f"{base}-{n}"
        ids.add(slug)
    return ids


def test_heading_ids_follow_github():
    assert heading_ids("## Against the authors' code (CPU)\n## Pareto sweeps on Ray\n## Pareto sweeps on Ray\n") == {
        "against-the-authors-code-cpu", "pareto-sweeps-on-ray", "pareto-sweeps-on-ray-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    text = page.read_text()
    dead = []
    for target in _LINK.findall(_FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in heading_ids(file.read_text()):
            dead.append(f"{target} (no heading #{anchor} in {file.name})")
    assert not dead, f"{page.name}: " + "; ".join(dead)


def test_readme_first_screen_has_the_commands():
    """The README opens with what branchsweep does, then the set-up and the sweep/export/latency commands."""
    text = (ROOT / "README.md").read_text()
    first = text[: text.index("## Where to read on")]
    for command in ("python sweeps/synthetic_pareto.py", "branchsweep export", "branchsweep latency", "-m pytest -q"):
        assert command in first, command
    assert len(text.splitlines()) < 150
