"""Run logging: always a local ``metrics.jsonl`` in the run directory; Weights & Biases when allowed.

wandb runs online when ``wandb_config.yaml`` (see ``wandb_config.yaml.example``) provides
``wandb_api``, offline otherwise; ``--no_wandb`` turns it off. It is never required to start a run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml


def read_wandb_config(path: Path = Path("wandb_config.yaml")) -> dict[str, Any]:
    """The optional secrets/paths file of the paper README; {} when absent."""
    if not path.is_file():
        return {}
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a YAML mapping (e.g. 'wandb_api: KEY'), got {type(data).__name__}")
    return data


class RunLogger:
    """Writes one JSON object per ``log`` call to ``metrics.jsonl`` and mirrors it to wandb."""

    def __init__(self, run_dir: Path, config: dict[str, Any], project: str, name: str, use_wandb: bool = True,
                 resume_step: int | None = None):
        """``resume_step``: the run continues from a checkpoint at this optimizer step, so rows logged
        after it (by the interrupted process, and its final evaluation rows) are dropped: the resumed run
        writes them again and ``metrics.jsonl`` reads as one uninterrupted run. Validation rows of that
        step stay: validation runs before the checkpoint of its step, which records it."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            self._truncate(resume_step)
        self._file = open(self.path, "a")
        self._wandb = None
        if use_wandb and os.environ.get("WANDB_MODE") != "disabled":
            self._wandb = self._init_wandb(run_dir, config, project, name)

    def _truncate(self, step: int) -> None:
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut short by a hard kill
                continue
            final_eval = any(k.startswith(("eval/", "eval_best/")) for k in row)
            if row.get("step", 0) < step or (row.get("step") == step and not final_eval):
                keep.append(line)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text("".join(f"{line}\n" for line in keep))
        os.replace(tmp, self.path)

    @staticmethod
    def _init_wandb(run_dir: Path, config: dict[str, Any], project: str, name: str) -> Any:
        try:
            import wandb
        except ImportError:
            return None
        key = read_wandb_config().get("wandb_api")
        if key and key != "wandb_api_key":
            os.environ.setdefault("WANDB_API_KEY", str(key))
        else:
            os.environ.setdefault("WANDB_MODE", "offline")
        return wandb.init(project=project, name=name, config=config, dir=str(run_dir), reinit=True)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        row = {"step": step, "time": round(time.time(), 3), **metrics}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log(metrics, step=step)

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
