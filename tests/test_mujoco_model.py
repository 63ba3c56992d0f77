"""MuJoCo's continuous-action model: state normalisation inside the model (statistics, equivalence, saved with the
weights), padded steps that never change valid outputs, and incremental decoding equal to full recomputation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("h5py")

from MuJoCo.MuJoCo_src.mujoco_data import (  # noqa: E402
    mujoco_dataset,
    mujoco_store,
)
from RATE_model import RATE  # noqa: E402
from RATE_model.rollout import Decoder  # noqa: E402
from tests.helpers import MODES, run_segments  # noqa: E402
from tests.mujoco_helpers import (  # noqa: E402
    continuous_batch,
    mujoco_config,
    one_thread,  # noqa: F401 (module-wide fixture)
    write_d4rl_file,
)

ENV_KEYS = ("enc.obs.0.mean", "enc.obs.0.std")  # the state statistics in a mujoco model's state_dict


# ------------------------------------------------------------------------------------------ model
def test_model_normalises_states_with_the_stats_it_carries(tmp_path):
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=11) * 5, rng.uniform(0.5, 4.0, 11)
    normed = RATE(mujoco_config(mean=mean, std=std).validate()).eval()
    plain = RATE(mujoco_config().validate()).eval()
    weights = {k: v for k, v in normed.state_dict().items() if k not in ENV_KEYS}
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    assert sorted(missing) == sorted(ENV_KEYS) and not unexpected
    np.testing.assert_array_equal(plain.state_dict()["enc.obs.0.std"].numpy(), np.ones(11, np.float32))
    raw = continuous_batch(2, 8, scale=torch.as_tensor(std, dtype=torch.float32),
                           offset=torch.as_tensor(mean, dtype=torch.float32))
    pre = {**raw, "obs": (raw["obs"] - torch.as_tensor(mean, dtype=torch.float32))
           / torch.as_tensor(std, dtype=torch.float32)}
    with torch.no_grad():
        a = torch.cat(run_segments(normed, raw), 1)
        b = torch.cat(run_segments(plain, pre), 1)
        c = torch.cat(run_segments(plain, raw), 1)
    assert a.shape == (2, 8, 3) and a.abs().max() < 1  # Tanh head
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the statistics matter
    # the statistics are buffers: a saved state_dict carries them into a model built without them
    torch.save(normed.state_dict(), tmp_path / "model.pt")
    loaded = RATE(mujoco_config().validate()).eval()
    loaded.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    np.testing.assert_allclose(loaded.state_dict()["enc.obs.0.mean"].numpy(), mean, rtol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(run_segments(loaded, raw), 1), a, rtol=0, atol=0)


def test_padded_steps_never_change_valid_continuous_outputs(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    write_d4rl_file(path, [5, 12, 9])
    data = mujoco_dataset(mujoco_store(path, "hopper", tmp_path / "store"), window=12, n_windows=10)
    batch = data[np.array([[0, 0], [1, 0], [2, 6]])]
    model = RATE(mujoco_config(context_length=4, sections=3).validate()).eval()
    junk = {k: v.clone() for k, v in batch.items()}
    pad = ~junk["valid"]
    junk["obs"][pad], junk["action"][pad], junk["rtg"][pad] = 50.0, 0.7, -3.0
    with torch.no_grad():
        a = torch.cat(run_segments(model, batch), 1)
        b = torch.cat(run_segments(model, junk), 1)
    torch.testing.assert_close(a[batch["valid"]], b[batch["valid"]], rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_continuous_incremental_decoding_equals_full_recomputation(mode):
    rng = np.random.default_rng(2)
    cfg = mujoco_config(mode, mean=rng.normal(size=11), std=rng.uniform(0.5, 2, 11))
    model = RATE(cfg.validate()).eval()
    K = model.cfg.context_length
    T = K * (3 if K == 4 else 2)  # 3 segments of 4 steps (DT: 2 windows of 12)
    batch = continuous_batch(3, T)
    with torch.no_grad():
        full = torch.cat(run_segments(model, batch), 1)
        dec, inc = Decoder(model, 3), []
        for t in range(T):
            inc.append(dec.act_logits(batch["rtg"][:, t, 0], batch["obs"][:, t]))
            dec.observe_action(batch["action"][:, t])
    assert full.shape == (3, T, 3)
    torch.testing.assert_close(torch.stack(inc, 1), full, rtol=0, atol=1e-5)

