"""The documents a newcomer follows point at things that exist, and the layout they describe
holds: every relative link and repository path in README.md, CHANGELOG.md and docs/ resolves,
and `core` never imports the Telegram adapter."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md")])
# A backticked word is taken for a repository path when it starts with one of these folders.
SOURCE_FOLDERS = ("core", "bot", "tests", "bench", "docs", ".ci")
# docs/architecture.md describes the layout that the acceleration work moves into place. Each
# path here must still be missing (a test says so), so the set empties as the move lands.
AWAITED: frozenset[str] = frozenset()

FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def prose(document: Path) -> str:
    """The text a reader follows: without fenced code blocks and HTML comments."""
    return COMMENT.sub("", FENCED.sub("", document.read_text(encoding="utf-8")))


def anchors(document: Path) -> set[str]:
    """GitHub's anchors for the document's headings (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(document)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(document: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(document))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: ...
    ]


def repository_paths(document: Path) -> list[str]:
    return [
        word
        for word in CODE.findall(prose(document))
        if "/" in word and word.split("/")[0] in SOURCE_FOLDERS
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(document):
    broken = []
    for target in relative_links(document):
        path, _, anchor = target.partition("#")
        destination = (document.parent / path).resolve() if path else document
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no such heading")
    assert broken == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(REPO)))
def test_every_repository_path_named_exists(document):
    missing = [
        path
        for path in repository_paths(document)
        if path not in AWAITED and not (REPO / path).exists()
    ]
    assert missing == []


def test_the_awaited_layout_is_not_there_yet():
    """Once a path of the new layout exists, it leaves AWAITED and is checked like the rest."""
    arrived = sorted(path for path in AWAITED if (REPO / path).exists())
    assert arrived == []


def test_the_readme_finds_the_links_and_paths_it_should():
    """The checks above see what they are meant to: a link with an anchor, and a path."""
    readme = REPO / "README.md"
    assert "docs/performance.md#capping-the-cpu" in relative_links(readme)
    assert "tests/fake_botapi.py" in relative_links(readme)
    assert "remote-inference" in anchors(readme)


def imported_packages(source: Path) -> set[str]:
    """Top-level package of every absolute import in a module."""
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    packages = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def test_core_never_imports_the_telegram_adapter():
    offenders = {
        str(module.relative_to(REPO)): sorted(imported_packages(module) & {"bot", "telegram"})
        for module in sorted((REPO / "core").rglob("*.py"))
    }
    assert {module: found for module, found in offenders.items() if found} == {}


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from telegram import Bot\n    import bot.app\n")
    assert imported_packages(module) == {"telegram", "bot"}


def settings_read() -> set[str]:
    """The variables `Settings.from_env` reads: the first argument of each `read.<kind>(...)`."""
    tree = ast.parse((REPO / "core" / "config.py").read_text(encoding="utf-8"))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "read"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def test_the_readme_has_a_configuration_row_for_every_setting():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", readme, re.MULTILINE))
    assert len(settings_read()) > 20
    assert sorted(settings_read() - rows) == []
