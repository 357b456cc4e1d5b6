"""spec/README.md lists exactly the (domain, op, version) triples refquant implements, each with a page."""

from __future__ import annotations

import re
from pathlib import Path

import refquant

SPEC = Path(__file__).resolve().parent.parent / "spec"
ROW = re.compile(r"^\|\s*(?P<domain>[\w.]+)\s*\|\s*(?P<op>\w+)\s*\|\s*(?P<versions>[\d,\s]+)\|\s*\[[^\]]+\]\((?P<page>[^)]+)\)\s*\|$")


def _index_rows():
    rows = [ROW.match(line) for line in (SPEC / "README.md").read_text().splitlines()]
    return [m for m in rows if m]


def test_index_matches_supported_ops():
    listed = set()
    for row in _index_rows():
        domain = "" if row["domain"] == "ai.onnx" else row["domain"]
        listed |= {(domain, row["op"], int(v)) for v in row["versions"].split(",")}
    implemented = set(refquant.supported_ops())
    assert sorted(implemented - listed) == [], "implemented but missing from spec/README.md"
    assert sorted(listed - implemented) == [], "listed in spec/README.md but not implemented"


def test_every_listed_page_exists_and_mentions_its_ops():
    for row in _index_rows():
        page = SPEC / row["page"]
        assert page.is_file(), f"{row['op']}: {row['page']} does not exist"
        assert row["op"] in page.read_text(), f"{row['page']} never mentions {row['op']}"


def test_every_profile_option_and_named_profile_is_documented():
    from dataclasses import fields

    from refquant.profiles import PROFILES, Profile

    page = (SPEC / "profiles.md").read_text()
    for option in (f.name for f in fields(Profile) if f.name != "name"):
        assert f"| `{option}` |" in page, f"profile option {option} has no row in spec/profiles.md"
    for name in PROFILES:
        assert f"`{name}`" in page, f"profile {name} is not described in spec/profiles.md"


MARKDOWN_LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_in_spec_and_readme_resolves():
    """spec/ points to files elsewhere in the tree (the packaged divergences.toml): every such link must exist."""
    pages = [*SPEC.rglob("*.md"), SPEC.parent / "README.md"]
    broken = [
        f"{page.relative_to(SPEC.parent)} -> {match['target']}"
        for page in pages
        for match in MARKDOWN_LINK.finditer(page.read_text())
        if "://" not in match["target"] and not (page.parent / match["target"]).exists()
    ]
    assert broken == []


def test_divergences_have_one_copy_shipped_with_the_package():
    from refquant.backends.divergence import DIVERGENCES_FILE

    generated = {".venv", ".ci-venvs", "mutants", "build"}  # virtual environments; mutmut's copy of the tree (spec/mutation.md); setuptools' build folder
    copies = sorted(
        p.relative_to(SPEC.parent) for p in SPEC.parent.rglob("divergences.toml") if not generated & set(p.parts)
    )
    assert copies == [DIVERGENCES_FILE.resolve().relative_to(SPEC.parent)]
