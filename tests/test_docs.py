"""The documentation: the book builds without a warning, the README stays a short front door whose method index lists
every config option, and no user page carries work-tracking language."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "darts" / "conf"
README = ROOT / "README.md"
INDEXED_GROUPS = ("strategy", "evaluator", "selection", "search_space")  # every option of these has a README row
METHOD_INDEX = "## Method index"
MAX_README_LINES = 250
MAX_LINE_CHARS = 200
WORK_TRACKING = re.compile(r"\bissue \d+|\bTODO\b|\bFIXME\b|Against the targets", re.IGNORECASE)


def conf_options(conf: Path = CONF, groups: tuple[str, ...] = INDEXED_GROUPS) -> list[str]:
    """Every option of the indexed config groups, as written on a command line: ``strategy=darts``, ..."""
    return sorted(f"{group}={path.stem}" for group in groups for path in (conf / group).glob("*.yaml"))


def method_index(readme: str) -> str:
    """The README's method-index section: from its heading to the next heading of the same level."""
    start = readme.find(METHOD_INDEX)
    if start < 0:
        return ""
    end = readme.find("\n## ", start + len(METHOD_INDEX))
    return readme[start:] if end < 0 else readme[start:end]


def missing_options(text: str, options: list[str]) -> list[str]:
    """The options not written, exactly, as a word of a code span (`...`) of ``text``."""
    words = {word for span in re.findall(r"`([^`\n]+)`", text) for word in span.split()}
    return [option for option in options if option not in words]


def heading_slugs(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings, as MkDocs (and GitHub, for these headings) writes them."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # a '#' comment in a code block is no heading
    return {slugify(m.group(1).strip(), "-") for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.slow
def test_book_builds_strict(tmp_path):
    """`mkdocs build --strict` succeeds: no broken link or anchor, no warning."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_method_index_lists_every_option():
    """The README's method index names every option of the strategy, evaluator, selection and search-space groups."""
    options = conf_options()
    assert len(options) >= 25, options  # the globs found the config folders
    assert missing_options(method_index(README.read_text()), options) == []


def test_method_index_check_can_fail(tmp_path):
    """The method-index check reports an option that is absent, or mentioned outside the method index."""
    (tmp_path / "strategy").mkdir()
    (tmp_path / "strategy" / "made_up.yaml").write_text("_target_: nowhere.MadeUp\n")
    options = conf_options(CONF) + conf_options(tmp_path, ("strategy",))
    assert missing_options(method_index(README.read_text()), options) == ["strategy=made_up"]
    text = "`strategy=made_up`\n\n## Method index\n\n| `strategy=made_up_too` | `strategy=darts` |\n\n## Layout\n"
    assert missing_options(method_index(text), ["strategy=made_up", "strategy=darts"]) == ["strategy=made_up"]
    assert missing_options(method_index(text), ["strategy=made"]) == ["strategy=made"]  # a prefix is not a match


def test_readme_is_short():
    """README.md has at most 250 lines."""
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


def test_readme_lines_are_short():
    """No line of README.md is over 200 characters."""
    long_lines = [i for i, line in enumerate(README.read_text().splitlines(), 1) if len(line) > MAX_LINE_CHARS]
    assert long_lines == []


def test_readme_links_resolve():
    """Every relative link of README.md points at a file of the repository, and its anchor at a heading there."""
    text = README.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]: (\S+)$", text, flags=re.M)
    assert links
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), link
        if anchor:
            assert anchor in heading_slugs(target), link


@pytest.mark.parametrize("path", [README, *sorted((ROOT / "docs").rglob("*.md"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_work_tracking_words(path):
    """A user page (README.md, docs/**/*.md; not CHANGELOG.md) has no issue numbers, TODO, FIXME or work targets."""
    hits = [line for line in path.read_text().splitlines() if WORK_TRACKING.search(line)]
    assert hits == []


def test_work_tracking_check_can_fail():
    """The work-tracking pattern catches each kind of work note, and not an upstream repository's issue reference."""
    for note in ("see issue 7", "TODO: measure", "FIXME", "Against the targets of the sprint"):
        assert WORK_TRACKING.search(note), note
    assert not WORK_TRACKING.search("reported in the Beta-DARTS repository, issue #1")


def test_presets_page_lists_every_preset():
    """Every paper preset (darts/conf/experiment/*.yaml) has a row on the presets page."""
    page = (ROOT / "docs" / "presets.md").read_text()
    missing = [p.stem for p in (CONF / "experiment").glob("*.yaml") if f"| `{p.stem}` |" not in page]
    assert missing == []
