"""Run logging: always a local ``metrics.jsonl`` in the run directory; Weights & Biases as its mirror.

wandb runs online when ``wandb_config.yaml`` (see ``wandb_config.yaml.example``) provides
``wandb_api``, offline otherwise; ``--no_wandb`` turns it off. W&B never stops a run: a server that does
not answer within ``--wandb_timeout`` seconds (a compute node without internet) is one warning line and
the run logs offline (``wandb sync <dir>`` uploads it later); a ``log`` or ``finish`` that fails mid-run
is one warning line and the run goes on with ``metrics.jsonl`` alone. A ``metrics.jsonl`` that cannot be
written (a full disk) stops the run with a :class:`~RATE_model.files.WriteError`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from RATE_model.files import replacing, write_failure


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
                 resume_step: int | None = None, wandb_timeout: float = 30.0):
        """``resume_step``: the run continues from a checkpoint at this optimizer step, so rows logged
        after it (by the interrupted process, and its final evaluation rows) are dropped: the resumed run
        writes them again and ``metrics.jsonl`` reads as one uninterrupted run. Validation rows of that
        step stay: validation runs before the checkpoint of its step, which records it.
        ``wandb_timeout``: seconds ``wandb.init`` may wait for the server before the run goes offline."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            self._truncate(resume_step)
        self._file = open(self.path, "a")  # noqa: SIM115 (closed in close())
        self._last_step: int | None = None  # of the last row written whole
        self._failed = False  # a write failed (reported): closing does not report it again
        self._wandb = None
        if use_wandb and os.environ.get("WANDB_MODE") != "disabled":
            self._wandb = _init_wandb(Path(run_dir), config, project, name, wandb_timeout)

    def _truncate(self, step: int) -> None:
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut short by a hard kill or a full disk
                continue
            final_eval = any(k.startswith(("eval/", "eval_best/")) for k in row)
            if row.get("step", 0) < step or (row.get("step") == step and not final_eval):
                keep.append(line)
        with replacing(self.path, f"it is unchanged; free space and resume from the step-{step} checkpoint") as tmp:
            tmp.write_text("".join(f"{line}\n" for line in keep))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        row = {"step": step, "time": round(time.time(), 3), **metrics}
        try:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        except OSError as e:
            self._failed = True
            held = f"rows up to step {self._last_step}" if self._last_step is not None else "no row from this process"
            raise write_failure(self.path, e, f"it holds {held}; the checkpoints are unaffected") from None
        self._last_step = step
        if self._wandb is not None:
            self._mirror("log", lambda: self._wandb.log(metrics, step=step))

    def _mirror(self, what: str, call: Any) -> None:
        """Call W&B; a failure is one warning line and ends the mirroring (metrics.jsonl keeps every row)."""
        try:
            call()
        except Exception as e:  # noqa: BLE001 (whatever W&B raises, training goes on)
            self._wandb = None
            print(f"warning: W&B {what} failed ({_first_line(e)}); training goes on, {self.path} keeps every "
                  "row and W&B gets no more of this run", file=sys.stderr, flush=True)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as e:
            if not self._failed:
                raise write_failure(self.path, e, "the checkpoints are unaffected") from None
        finally:
            if self._wandb is not None:
                self._mirror("finish", self._wandb.finish)
                self._wandb = None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _init_wandb(run_dir: Path, config: dict[str, Any], project: str, name: str, timeout: float) -> Any:
    """A W&B run: online when a key is configured and the server answers within ``timeout`` seconds,
    offline otherwise (one warning line); None when wandb is not installed or cannot start at all.
    W&B's own terminal output is silenced (``WANDB_SILENT``; set it to false to see it)."""
    try:
        import wandb
    except ImportError:
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    key = read_wandb_config().get("wandb_api")  # YAML reads an all-digit key as a number
    if key is not None and str(key) not in ("", "wandb_api_key"):
        os.environ.setdefault("WANDB_API_KEY", str(key))
    else:
        os.environ.setdefault("WANDB_MODE", "offline")
    kwargs = {"project": project, "name": name, "config": config, "dir": str(run_dir), "reinit": "finish_previous"}
    try:
        run = wandb.init(**kwargs, settings=wandb.Settings(init_timeout=timeout))
    except Exception as e:  # noqa: BLE001 (an unreachable server, a refused key, ...)
        reason = _first_line(e)
    else:
        print(f"W&B: offline, upload with wandb sync {Path(run.dir).parent}" if run.offline else f"W&B: {run.url}",
              flush=True)
        return run
    try:
        run = wandb.init(**kwargs, mode="offline")
    except Exception as e:  # noqa: BLE001
        print(f"warning: W&B did not start ({reason}; offline: {_first_line(e)}); training goes on with "
              f"{run_dir / 'metrics.jsonl'} alone", file=sys.stderr, flush=True)
        return None
    print(f"warning: W&B did not start ({reason}); training goes on with W&B offline, upload it later with "
          f"wandb sync {Path(run.dir).parent}", file=sys.stderr, flush=True)
    return run
