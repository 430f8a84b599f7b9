"""README stays true to the CLI: every command and built-in backend is documented, set-up is two commands."""

from __future__ import annotations

import re
from pathlib import Path

from tagger.cli import cli
from tagger.inference.backends import discover

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_is_in_the_readme() -> None:
    for name in cli.commands:
        assert f"`genretag {name}" in README, f"command {name!r} is not documented in README.md"


def test_every_builtin_backend_is_in_the_readme() -> None:
    builtin = {n for n, info in discover().items() if info.distribution == "genretag"}
    assert builtin >= {"svc", "cnn", "resnet"}
    for name in builtin:
        assert f"| `{name}` |" in README, f"backend {name!r} is not in README's backend table"


def test_setup_is_two_commands_and_ci_runs_the_second() -> None:
    block = re.search(r"## Set-up.*?```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert block == ["pip install . && genretag scan ~/Music", "pip install '.[test]' && pytest"]
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert block[1] in ci.splitlines()


# -- README is an entry point; each manual lives in docs/ once ---------------------------
REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LONG = 80  # shorter paragraphs ("Measured here:", a pointer) may repeat


def paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a markdown page, whitespace normalised.

    Code blocks, headings and table rows are left out (a command or a table
    row may rightly appear on two pages); each list item is a paragraph.
    """
    found: list[str] = []
    current: list[str] = []
    fence = False

    def end() -> None:
        if current:
            found.append(" ".join(" ".join(current).split()))
            current.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = not fence
            end()
        elif fence or not stripped or stripped.startswith(("#", "|")):
            end()
        else:
            if re.match(r"([-*+]|\d+\.)\s", stripped):
                end()
            current.append(stripped)
    end()
    return found


def test_paragraphs_finds_prose_only() -> None:
    text = "# Title\n\nOne paragraph\nover two lines.\n\n```bash\nsome code\n```\n| a | b |\n- item one\n- item two\n"
    assert paragraphs(text) == ["One paragraph over two lines.", "- item one", "- item two"]


def test_no_paragraph_is_in_two_places() -> None:
    seen: dict[str, str] = {}
    twice = []
    for page in PAGES:
        for paragraph in paragraphs(page.read_text(encoding="utf-8")):
            if len(paragraph) <= LONG:
                continue
            where = page.relative_to(REPO).as_posix()
            if paragraph in seen:
                twice.append(f"{seen[paragraph]} and {where}: {paragraph[:100]}...")
            seen.setdefault(paragraph, where)
    assert not twice, "a paragraph appears twice; keep it on one page and link to it:\n" + "\n".join(twice)


def test_readme_is_an_entry_point() -> None:
    lines = README.splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move manuals into docs/"
    assert "## Development" in lines


def test_relative_links_point_to_files_that_exist() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL, or a section of the same page
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, f"links to missing files: {broken}"
