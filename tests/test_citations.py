"""Comments and docs cite pages of this repository, and every cited anchor exists.

The contract bubu implements is written up in ``docs/`` (``docs/contract/`` above all), in our
own words. A citation of a document outside the repository (the shared spec files the project
started from) means nothing to a reader of a release, so none may remain; a citation of
``docs/<page>.md#<anchor>`` must point at a page and an anchor that exist, or the comment sends
its reader nowhere. Anchors are the explicit ``{#id}`` of attr_list or the slug mkdocs gives a
heading without one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED = ("bubu", "tests", "benchmarks", "scripts", "examples", "docs", "protos")
SUFFIXES = {".py", ".pyi", ".md", ".go", ".proto", ".toml", ".yml", ".yaml", ".txt", ".sh"}
SKIPPED_DIRS = {"_gen", "__pycache__", ".pytest_cache", "node_modules"}

# The spec files' names, assembled so that this file does not cite them itself.
_MD = ".md"
SPEC_FILES = tuple(
    name + _MD
    for name in (
        "crds",
        "go-sdk-core",
        "stack-ceiling",
        "python-stack",
        "roadmap",
        "style",
        "layout-stage2",
        "go-sdk-docs-page",
    )
)
_SHARED = ".." + "/shared"
#: ``docs/streaming.md`` and ``docs/contract/stream.md`` are ours; the bare name (not in a path,
#: not a Markdown link target, without an ``#anchor``) is the spec file of the same name.
_BARE_STREAMING = re.compile(r"(?<![\w/.-])(?<!\]\()streaming" + re.escape(_MD) + r"(?![\w#-])")
_SPEC_NAMES = re.compile(
    "|".join(r"(?<![\w/.-])" + re.escape(name) for name in SPEC_FILES)
    + "|"
    + re.escape(_SHARED)
    + "|"
    + re.escape("shared/" + "spec")
)
#: A bare Go SDK spec section in parentheses, such as ``(c.13)`` or ``(Appendix A.1)``.
_BARE_SECTION = re.compile(r"\((?:[a-d]\.\d{1,2}(?:\.\d)?|Appendix [A-C](?:\.\d)?)[),;: ]")

#: Real paths, not citations: the CRD directory the test control plane installs by default.
ALLOWED = {
    ("tests/_controlplane/server.py", _SHARED + "/crds"),
    ("tests/controlplane/README.md", _SHARED + "/crds"),
}

_CITATION = re.compile(r"(?<![\w/.-])docs/((?:[\w-]+/)*[\w-]+\.md)(?:#([\w-]+))?")


def _files() -> Iterator[Path]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            rel = path.relative_to(ROOT)
            if SKIPPED_DIRS.intersection(rel.parts) or path.suffix not in SUFFIXES:
                continue
            if path.is_file() and path != Path(__file__).resolve():
                yield path


@cache
def _texts() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in _files()}


def slugify(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown ``toc``) gives a heading without an explicit id."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__|\*|_)(.+?)\1", r"\2", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


@cache
def anchors(page: str) -> frozenset[str]:
    """Every anchor of ``docs/<page>``: explicit ``{#id}``s and heading slugs."""
    found: set[str] = set()
    fenced = False
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced:
            continue
        found.update(re.findall(r"\{[^}]*?#([\w-]+)[^}]*\}", line))
        found.update(re.findall(r"<a\s+(?:id|name)=\"([\w-]+)\"", line))
        heading = re.match(r"#{1,6}\s+(.*?)\s*$", line)
        if heading and not re.search(r"\{[^}]*#[\w-]+[^}]*\}\s*$", heading.group(1)):
            found.add(slugify(heading.group(1)))
    return frozenset(found)


def _citations() -> Iterator[tuple[str, int, str, str | None]]:
    for rel, text in _texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for match in _CITATION.finditer(line):
                yield rel, number, match.group(1), match.group(2)


def test_nothing_cites_the_spec_files_outside_the_repository() -> None:
    offenders = []
    for rel, text in _texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for pattern in (_SPEC_NAMES, _BARE_STREAMING, _BARE_SECTION):
                for match in pattern.finditer(line):
                    if any(rel == f and line[match.start() :].startswith(s) for f, s in ALLOWED):
                        continue
                    offenders.append(f"{rel}:{number}: {line.strip()[:120]}")
    assert not offenders, "cite a docs/ page instead:\n" + "\n".join(offenders)


def test_every_cited_docs_page_and_anchor_exists() -> None:
    broken = []
    for rel, number, page, anchor in _citations():
        if not (DOCS / page).is_file():
            broken.append(f"{rel}:{number}: docs/{page} does not exist")
        elif anchor is not None and anchor not in anchors(page):
            broken.append(f"{rel}:{number}: docs/{page} has no anchor #{anchor}")
    assert not broken, "\n".join(broken)


def test_the_checks_see_the_citations_and_tell_anchors_apart() -> None:
    # The two tests above would pass vacuously if the scan found nothing.
    cited = {(page, anchor) for _, _, page, anchor in _citations()}
    assert len(cited) > 50
    assert ("contract/identity.md", "go-json") in cited
    assert "input-hash" in anchors("contract/identity.md")  # explicit {#input-hash}
    assert "input-hash-of-nothing" not in anchors("contract/identity.md")
    assert "phase-state-machine" not in anchors("contract/steprun-status.md")  # has {#phases}
    assert "configuration" in anchors("storage.md")  # a heading without an explicit id


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("# see (" + "crds" + _MD + " 2.2)", True),
        ("# see (" + "streaming" + _MD + " 4.3)", True),
        ("# a path " + _SHARED + "/spec/x", True),
        ("# bare section (c.13) of the Go spec", True),
        ("# (docs/contract/stream.md#encoding)", False),
        ("[Streaming engrams](streaming.md)", False),
        ("# bubu (docs/streaming.md) and v0.1.13 (c, d)", False),
    ],
)
def test_the_spec_patterns(line: str, flagged: bool) -> None:
    hit = any(p.search(line) for p in (_SPEC_NAMES, _BARE_STREAMING, _BARE_SECTION))
    assert hit is flagged


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Writing: GET, merge, patch", "writing-get-merge-patch"),
        ("`retries` is required", "retries-is-required"),
        ("The Go SDK's writes the webhook rejects", "the-go-sdks-writes-the-webhook-rejects"),
        ("Offload (dehydration)", "offload-dehydration"),
    ],
)
def test_slugify_matches_mkdocs(heading: str, slug: str) -> None:
    assert slugify(heading) == slug
