"""What every command of the project shares: config.yaml defaults, JSON-lines output, and the entry point
that turns configuration and data problems, and files that cannot be written, into one line on stderr
(exit 2)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from RATE_model.checkpoint import CheckpointError
from RATE_model.config import ConfigError
from RATE_model.data import DataError
from RATE_model.envs import EnvError
from RATE_model.files import WriteError, write_text
from RATE_model.trainer import NonFiniteLossError

USER_ERRORS = (ConfigError, DataError, CheckpointError, NonFiniteLossError, EnvError, FileNotFoundError, WriteError)


def load_defaults(path: Path) -> dict[str, Any]:
    """An environment's config.yaml as parser defaults."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a YAML mapping of flag names to values")
    return data


def write_json_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as one JSON object per line in ``path`` (its folder made if missing): a command's ``--out``."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def run_main(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> None:
    """Call ``main``; report configuration and data problems on one line (exit 2), Ctrl-C as 130."""
    try:
        main(argv)
    except USER_ERRORS as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        sys.exit(130)
