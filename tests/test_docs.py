"""Every command the documents quote names a script or module that exists, and every flag it passes is declared
by the project: README.md, RESULTS.md, docs/ and each env's and the benchmarks' results pages (the README-lines
tests of each env run the seed README's commands)."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted({ROOT / "README.md", ROOT / "RESULTS.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("*/RESULTS*.md")})
THIRD_PARTY = ("pytest", "pip", "venv", "torch", "minari")
COMMAND = re.compile(r"\bpython3?(?:\s+-W\s+\S+)?\s+(?:-m\s+(?P<module>[A-Za-z_][\w.]*)|(?P<script>[\w./-]+\.py))")


def commands(path: Path) -> list[tuple[int, str, str]]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        for m in COMMAND.finditer(line):
            out.append((n, "module", m["module"]) if m["module"] else (n, "script", m["script"]))
    return out


def test_the_documents_quote_commands():
    assert sum(len(commands(p)) for p in DOCS) > 50 and ROOT / "docs" / "adding_an_env.md" in DOCS


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_command_exists(doc):
    missing = []
    for line, kind, name in commands(doc):
        if kind == "module":
            if name.endswith("."):  # a placeholder: python -m RATE_model.tools.<name>
                continue
            top = name.split(".")[0]
            if top in THIRD_PARTY or not (ROOT / top).exists():
                continue  # third-party tools
            if importlib.util.find_spec(name) is None:
                missing.append(f"{doc.name}:{line} python -m {name}")
        elif not name.startswith(("/", "~")) and not (ROOT / name).is_file():
            missing.append(f"{doc.name}:{line} {name}")
    assert not missing, "\n".join(missing)


@functools.cache
def declared_flags() -> frozenset[str]:
    """Every ``--flag`` a Python file of the project declares (a string literal starting with ``--``)."""
    out: set[str] = set()
    for p in ROOT.rglob("*.py"):
        if not {".venv", "tests", ".git"} & set(p.relative_to(ROOT).parts):
            out |= set(re.findall(r"""["'](--[a-z][a-z0-9_]*)""", p.read_text()))
    return frozenset(out)


def quoted_flags(path: Path) -> list[tuple[int, str]]:
    """The flags of every quoted project command (continued lines joined), but those of a command marked as
    run at an earlier commit (the line before it: ``# at commit <sha> ...``)."""
    lines, out, i = path.read_text().splitlines(), [], 0
    while i < len(lines):
        n, line, before = i + 1, lines[i], lines[i - 1] if i else ""
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i]
        i += 1
        m = COMMAND.search(line)
        if not m or before.startswith("# at commit") or (m["module"] or "").split(".")[0] in THIRD_PARTY:
            continue
        tail = line[m.end():].split(" #")[0].split("|")[0].split("`")[0]
        out += [(n, f) for f in re.findall(r"(?<![\w-])(--[a-z][a-z0-9_]*)", tail)]
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_flag_is_declared(doc):
    """A flag that was removed (or renamed) is not quoted as if it still ran; commands of an earlier commit say so."""
    known = declared_flags()
    missing = [f"{doc.name}:{n} {flag}" for n, flag in quoted_flags(doc) if flag not in known]
    assert not missing, "\n".join(missing)
