import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# one thread per pytest-xdist worker (make test runs one worker per core), else OMP_NUM_THREADS or 2
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"  # the train scripts tests start as subprocesses too
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))


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
