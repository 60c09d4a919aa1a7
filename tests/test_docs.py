"""The documentation holds together: every link and image in the README, the lessons' README and docs/ resolves (to a
file, and to a heading where it names one), the README stays one screen with the install command near its top and the
test command CI runs, and every "DESIGN §N" the code cites is a section of docs/design.md."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DESIGN = ROOT / "docs" / "design.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, ROOT / "lessons" / "README.md", *DOCS]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[^\S\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[\"'(][^)]*)?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
HTML_SRC = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)   # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked out (links are not links there)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def link_targets(text: str) -> list[str]:
    """Every link and image target in Markdown text: inline, reference definitions, and HTML src/href."""
    text = prose(text)
    found = INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text) + HTML_SRC.findall(text)
    return [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in found]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercase, punctuation but hyphens dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown document, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(doc: Path) -> list[str]:
    """Each link or image target of `doc` that does not resolve, with the reason."""
    problems = []
    for target in link_targets(doc.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part)
        if not path_part:
            dest = doc
        elif path_part.startswith("/"):
            dest = ROOT / path_part.lstrip("/")
        else:
            dest = doc.parent / path_part
        if not dest.exists():
            problems.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{target}: {dest.name} has no heading with anchor #{anchor}")
    return problems


# ---------------------------------------------------------------------------------------------------- the checker

def test_slugs_are_githubs():
    assert slug("10. The experiment: `minisparse reproduce`, the scorecard, reading a circuit") == (
        "10-the-experiment-minisparse-reproduce-the-scorecard-reading-a-circuit")
    assert slug("Circuits at matched loss: `minisparse reproduce`") == "circuits-at-matched-loss-minisparse-reproduce"
    assert slug("Sparse products (scipy.sparse CSR) against dense BLAS") == (
        "sparse-products-scipysparse-csr-against-dense-blas")
    assert slug("What it shows, and what it does not yet") == "what-it-shows-and-what-it-does-not-yet"
    assert slug("Speed: a step — fast") == "speed-a-step--fast"
    assert slug("See [the docs](docs/a.md)") == "see-the-docs"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n### B ###\n") == {"a", "a-1", "b"}


def test_the_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    (tmp_path / "fig.png").write_bytes(b"\x89PNG")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n"
        "[fine](other.md) [fine too](other.md#a-section) ![ok](fig.png) [here](#title) [web](https://example.com)\n"
        "[gone](missing.md) ![lost](nofig.png) [no anchor](other.md#nowhere) [no local anchor](#nope)\n"
        "[ref]: missing-ref.md\n"
        '<img src="missing.svg">\n'
        "`[in code](ignored.md)`\n\n```\n[in a block](ignored-too.md)\n```\n"
    )
    problems = broken_links(doc)
    assert len(problems) == 6, problems
    for bad in ("missing.md", "nofig.png", "other.md#nowhere", "#nope", "missing-ref.md", "missing.svg"):
        assert any(p.startswith(bad + ":") for p in problems), (bad, problems)


# ---------------------------------------------------------------------------------------------------- the documents

def test_the_documents_are_there():
    names = {p.name for p in DOCS}
    assert {"design.md", "results.md", "speed.md", "testing.md", "mlx.md", "architecture.md"} <= names, names
    assert not (ROOT / "DESIGN.md").exists(), "DESIGN.md moved to docs/design.md; the old copy is back"
    for doc in DOCUMENTS:
        assert doc.is_file(), doc


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_image_resolves(doc):
    problems = broken_links(doc)
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_readme_links_every_docs_page_the_lessons_and_the_license():
    linked = {(README.parent / unquote(t.partition("#")[0])).resolve()
              for t in link_targets(README.read_text(encoding="utf-8")) if not EXTERNAL.match(t) and t[:1] != "#"}
    wanted = {p.resolve() for p in DOCS} | {(ROOT / "lessons" / "README.md").resolve(), (ROOT / "LICENSE").resolve()}
    assert not wanted - linked, f"the README does not link {sorted(str(p) for p in wanted - linked)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_docs_page_links_back_to_the_readme(doc):
    targets = [t.partition("#")[0] for t in link_targets(doc.read_text(encoding="utf-8"))]
    assert any((doc.parent / t).resolve() == README.resolve() for t in targets if t), doc.name


# ---------------------------------------------------------------------------------------------------- the README

def test_the_readme_is_one_screen():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; at most 150"


def test_a_newcomer_finds_the_install_command_in_the_first_30_lines():
    head = README.read_text(encoding="utf-8").splitlines()[:30]
    assert any(re.search(r"(?:^|\s)pip install -e \.(?:\s|$)", line) for line in head), (
        "`pip install -e .` is not within the README's first 30 lines")


def test_the_readme_gives_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    runs_pytest = re.compile(r"(?:^|&&|;|\s)(?:python3? -m )?pytest(?:\s|$)")   # runs it, not merely names it
    commands = [line.strip() for line in ci if not line.lstrip().startswith("#") and runs_pytest.search(line)]
    assert len(commands) == 1, f".ci/run should run pytest on one line, found {commands}"
    readme_lines = [line.strip() for line in README.read_text(encoding="utf-8").splitlines()]
    assert commands[0] in readme_lines, f"the README does not give CI's test command verbatim: {commands[0]}"


# ---------------------------------------------------------------------------------------------------- DESIGN

def test_design_keeps_its_name():
    title = DESIGN.read_text(encoding="utf-8").splitlines()[0]
    assert title.startswith("# ") and "DESIGN" in title, title


def test_every_design_section_the_code_cites_exists():
    sections = set(re.findall(r"^## (\d+)\. ", DESIGN.read_text(encoding="utf-8"), flags=re.M))
    cited: dict[str, str] = {}
    for path in sorted((ROOT / "minisparse").rglob("*.py")):
        for n in re.findall(r"DESIGN §(\d+)", path.read_text(encoding="utf-8")):
            cited.setdefault(n, str(path.relative_to(ROOT)))
    assert cited, "the code cites no DESIGN section: the citation pattern changed?"
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"docs/design.md has sections {sorted(sections, key=int)}, but the code cites {missing}"
