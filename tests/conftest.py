import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# one thread per pytest-xdist worker (make test runs one worker per core), else OMP_NUM_THREADS or 2
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"  # the train scripts tests start as subprocesses too
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))


# The files that take longest (seconds of one worker, `make test`, 2 cores, 2026-12-08: 128, 108, 69, 54, 49, 43):
# started first, so that `make test`'s two workers end together (pytest-xdist --dist loadfile keeps a file on one
# worker and, with --no-loadscope-reorder, hands files out in this order).
SLOW_FIRST = ("test_memory_maze_env.py", "test_memory_maze.py", "test_image_cue.py", "test_atari.py",
              "test_minari.py", "test_vizdoom.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))  # stable: file order otherwise kept


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fp32_unless_asked(monkeypatch):
    """--precision auto means fp32 in every in-process test, whatever CPU runs the suite: the exactness
    tests (DDP equals one process, decoding equals forward) are written for fp32, and a test's outcome
    must not depend on whether CI's CPU has avx512_bf16. tests/test_precision.py forces bf16. Scripts
    run as subprocesses resolve auto themselves; what they assert (resume and reruns bit-exact, files,
    exit codes) holds in either precision."""
    from RATE_model import precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
