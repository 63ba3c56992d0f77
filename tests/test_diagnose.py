"""RATE_model.diagnose: per-step losses equal the trainer's loss, and their split by step groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from RATE_model.data import Trajectories
from RATE_model.diagnose import dataset_losses, preference, split_means, step_losses, window_fields
from RATE_model.trainer import SegmentLoss
from tests.helpers import random_batch, run_segments, tiny_model


@pytest.mark.parametrize("mode", ["RATE", "DT"])
def test_step_losses_are_the_trainers_loss_step_by_step(mode):
    torch.manual_seed(0)
    model = tiny_model(mode)
    batch = random_batch(3, 12, valid_len=[12, 9, 3])
    model.train()  # step_losses evaluates in eval mode and gives the mode back
    ce, hit = step_losses(model, batch)
    assert model.training and ce.shape == hit.shape == (3, 12)
    valid = batch["valid"]
    assert torch.isnan(ce[~valid]).all() and not hit[~valid].any() and torch.isfinite(ce[valid]).all()
    model.eval()
    K = model.cfg.context_length
    segs = [{k: v[:, s:s + K] for k, v in batch.items()} for s in range(0, 12, K)]
    with torch.no_grad():
        trainer_loss, _ = SegmentLoss(model)(segs, None, [float(s["valid"].sum()) for s in segs])
    per_segment = [ce[:, s:s + K][valid[:, s:s + K]].mean() for s in range(0, 12, K)]
    assert torch.stack(per_segment).mean().item() == pytest.approx(trainer_loss.item(), rel=1e-5)
    with torch.no_grad():
        argmax = torch.cat(run_segments(model, batch), 1).argmax(-1)
    assert torch.equal(hit, (argmax == batch["action"]) & valid)


def test_split_means_over_named_groups():
    ce = np.array([[0.1, 0.7, math.nan], [0.3, 0.9, 0.5]])
    hit = np.array([[True, False, False], [True, True, False]])
    dep = np.array([[False, True, True], [False, True, False]])
    res = split_means(ce, hit, {"dependent": dep, "other": ~dep, "none": np.zeros_like(dep)})
    assert res["dependent"] == {"loss": pytest.approx(0.8), "accuracy": 0.5, "steps": 2}  # the NaN step is padding
    assert res["other"] == {"loss": pytest.approx(0.3), "accuracy": pytest.approx(2 / 3), "steps": 3}
    assert res["none"] == {"loss": None, "accuracy": None, "steps": 0}


def test_preference_for_the_data_action_over_a_counterfactual():
    logp = np.log(np.array([[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]]]))  # [1, 3 steps, 3 actions]
    chosen, other = np.array([[0, 1, 2]]), np.array([[1, 1, 0]])  # step 1: no counterfactual difference
    res = preference(logp, chosen, other, np.ones((1, 3), bool))
    assert res["steps"] == 2 and res["prefers_chosen"] == 1.0
    assert res["margin"] == pytest.approx((math.log(0.7 / 0.2) + math.log(0.4 / 0.3)) / 2)
    blind = np.log(np.full((1, 3, 3), 1 / 3))  # a model that ignores the cue: no margin, no preference
    assert preference(blind, chosen, other, np.ones((1, 3), bool)) == {"margin": 0.0, "prefers_chosen": 0.0,
                                                                      "steps": 2}
    assert preference(logp, chosen, other, np.zeros((1, 3), bool))["steps"] == 0


def test_dataset_losses_in_batches_equal_step_losses_of_the_whole_table():
    torch.manual_seed(0)
    model = tiny_model("RATE")
    batch = random_batch(5, 12, valid_len=[12, 9, 3, 12, 6])
    data = Trajectories(batch)
    table = np.array([4, 0, 2, 1, 3])  # any order of windows; batches of 2 leave one window alone
    out = dataset_losses(model, data, table, batch_size=2)
    ce, hit = step_losses(model, {k: v[torch.as_tensor(table)] for k, v in batch.items()})
    assert out["logp"].shape == (5, 12, 4)
    np.testing.assert_allclose(out["ce"], ce.numpy(), rtol=1e-5, atol=1e-6)  # NaN at the same padded steps
    assert np.array_equal(out["hit"], hit.numpy())
    assert np.array_equal(out["action"], batch["action"][torch.as_tensor(table)].clamp(min=0).numpy())


def test_window_fields_cut_each_episode_and_pad_past_its_end():
    per_episode = [np.arange(10), np.arange(100, 104)]
    table = np.array([[0, 0], [0, 7], [1, 1]])
    assert window_fields(per_episode, table, 4).tolist() == [[0, 1, 2, 3], [7, 8, 9, 0], [101, 102, 103, 0]]
