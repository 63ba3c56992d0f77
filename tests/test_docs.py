"""Every command the documents quote names a script or module that exists: README.md, RESULTS.md, docs/ and
each env's and the benchmarks' results pages (the README-lines tests of each env run the seed README's commands)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted({ROOT / "README.md", ROOT / "RESULTS.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("*/RESULTS*.md")})
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
            if top in ("pytest", "pip", "venv", "torch", "minari") or not (ROOT / top).exists():
                continue  # third-party tools
            if importlib.util.find_spec(name) is None:
                missing.append(f"{doc.name}:{line} python -m {name}")
        elif not name.startswith(("/", "~")) and not (ROOT / name).is_file():
            missing.append(f"{doc.name}:{line} {name}")
    assert not missing, "\n".join(missing)
