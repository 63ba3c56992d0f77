import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
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
