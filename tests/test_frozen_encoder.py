"""A pretrained or frozen observation encoder (``--init_encoder``, ``--freeze_encoder``): the cached encodings
equal the encoder's outputs window by window, the model gives the same logits from them as from the frames,
a frozen run leaves the encoder's weights as loaded, and bad weight files are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from RATE_model import RATE, ModelConfig
from RATE_model.config import ConfigError, TrainConfig, build_parser, split_args
from RATE_model.data import (
    EpisodeStore,
    consecutive,
    embedded,
    frames_at,
    uint8_to_float,
    weights_key,
    with_returns_to_go,
)
from RATE_model.encoders import ENCODER_FILE_KEY, PIXEL_STD_FLOOR, image_encoder, load_encoder, save_encoder
from RATE_model.experiment import prepare_encoder
from RATE_model.store import StoreWriter

OBS = (3, 64, 112)  # ViZDoom frames


def vizdoom_model(seed: int = 0) -> RATE:
    torch.manual_seed(seed)
    return RATE(ModelConfig(env="vizdoom", model_mode="DT", context_length=6, sections=1, n_layer=1, n_head=2,
                            d_model=16, d_head=8, d_inner=16, num_mem_tokens=0, mem_len=0, n_head_ca=0,
                            mrv_act="no_act", dropout=0.0)).eval()


def image_episodes(lengths, seed=0, shape=OBS, n_actions=5):
    rng = np.random.default_rng(seed)
    return [with_returns_to_go({"obs": rng.integers(0, 256, (T, *shape), dtype=np.uint8),
                                "action": rng.integers(0, n_actions, T), "reward": rng.random(T).astype(np.float32)})
            for T in lengths]


def make_store(episodes, where, tmp_path) -> EpisodeStore:
    """The episodes in a store in RAM (``where="ram"``) or written to disk."""
    if where == "ram":
        return EpisodeStore.from_episodes(episodes)
    with StoreWriter(tmp_path / "store") as w:
        for ep in episodes:
            w.append(ep)
        return w.close()


@pytest.mark.parametrize("where", ["ram", "disk"])
def test_cached_encodings_are_the_encoders_outputs_and_give_the_same_logits(where, tmp_path):
    eps = image_episodes([7, 4])
    store = make_store(eps, where, tmp_path)
    frames = consecutive(store, 6, obs_transform=uint8_to_float)
    model = vizdoom_model()
    cached = embedded(frames, model.enc.encode_frames, batch_size=3, progress=False)  # batches across episodes
    assert len(cached) == len(frames) == 3 and cached.in_memory and cached.obs_transform is None
    a, b = frames.batch(range(3)), cached.batch(range(3))
    assert b["obs"].shape == (3, 6, 16) and b["obs"].dtype == torch.float32
    for k in ("action", "rtg", "valid"):
        assert torch.equal(a[k], b[k]), k
    with torch.no_grad():
        want = model.enc.embed_obs(a["obs"])
        torch.testing.assert_close(b["obs"], want, rtol=1e-5, atol=1e-5)
        assert torch.equal(b["obs"][2, 4:], b["obs"][2, 3:4].expand(2, -1))  # padding repeats the last step
        logits_frames, _ = model(a["rtg"], a["obs"], a["action"], a["valid"])
        logits_cached, _ = model(b["rtg"], b["obs"], b["action"], b["valid"])
    torch.testing.assert_close(logits_cached, logits_frames, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("where", ["ram", "disk"])
def test_cache_of_stacked_frames_holds_each_steps_stack_encoding(where, tmp_path):
    """Atari: 84×84 frames stored singly, stacked 4 at batch time. The cache holds one encoding per step (of the
    stack ending there, its episode's first frame repeated before its start) and the cached windows stack
    nothing; the model gives the same logits from them as from the stacked frames."""
    eps = image_episodes([5, 2, 6], seed=1, shape=(84, 84), n_actions=4)
    store = make_store(eps, where, tmp_path)
    frames = consecutive(store, 3, frame_stack=4, obs_transform=uint8_to_float)
    torch.manual_seed(0)
    model = RATE(ModelConfig(env="atari", model_mode="DT", context_length=3, sections=1, n_layer=1, n_head=2,
                             d_model=16, d_head=8, d_inner=16, num_mem_tokens=0, mem_len=0, n_head_ca=0,
                             mrv_act="no_act", dropout=0.0, env_kwargs={"n_actions": 4}).validate()).eval()
    cached = embedded(frames, model.enc.encode_frames, batch_size=4, progress=False)  # batches across episodes
    assert cached.frame_stack == 1 and frames.frame_stack == 4
    n = len(frames)
    a, b = frames.batch(range(n)), cached.batch(range(n))
    assert a["obs"].shape == (n, 3, 4, 84, 84) and b["obs"].shape == (n, 3, 16)
    assert torch.equal(a["obs"][2, 0], a["obs"][2, 0, :1].expand(4, -1, -1))  # the second episode's first step
    every = frames_at(store, np.arange(store.n_steps), 4)  # one read, and one per step, give the same stacks
    assert every.shape == (13, 4, 84, 84) and np.array_equal(frames_at(store, [1, 5, 6, 12], 4), every[[1, 5, 6, 12]])
    assert np.array_equal(every[6], store.take("obs", np.array([5, 5, 5, 6])))
    with torch.no_grad():
        torch.testing.assert_close(b["obs"], model.enc.embed_obs(a["obs"]), rtol=1e-5, atol=1e-5)
        logits_frames, _ = model(a["rtg"], a["obs"], a["action"], a["valid"])
        logits_cached, _ = model(b["rtg"], b["obs"], b["action"], b["valid"])
    torch.testing.assert_close(logits_cached, logits_frames, rtol=1e-4, atol=1e-5)


def test_encodings_kept_beside_a_disk_store_are_reused_only_for_the_same_encoder_and_steps(tmp_path):
    """``key``: the first call writes ``<store>/encodings/<key>-<steps>.npy``; a second call with the same encoder
    reads it (the encoder is not called) and gives the same windows; another encoder, frame stack or subset
    of episodes gets its own file; a damaged file is recomputed, not trusted."""
    store = make_store(image_episodes([5, 3, 4], seed=2, shape=(84, 84), n_actions=4), "disk", tmp_path)
    frames = consecutive(store, 4, frame_stack=4, obs_transform=uint8_to_float)
    enc = image_encoder((4, 84, 84), 8)
    calls = []

    def encode(x):
        calls.append(len(x))
        return enc(x)

    key = weights_key(enc)
    first = embedded(frames, encode, progress=False, key=key)
    files = sorted((tmp_path / "store" / "encodings").glob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith(key) and sum(calls) == 12
    again = embedded(frames, encode, progress=False, key=key)
    assert sum(calls) == 12 and torch.equal(again.batch(range(3))["obs"], first.batch(range(3))["obs"])
    embedded(consecutive(store.head(2), 4, frame_stack=4, obs_transform=uint8_to_float), encode, progress=False,
             key=key)  # other steps
    embedded(consecutive(store, 4, frame_stack=3, obs_transform=uint8_to_float),
             lambda x: enc(torch.cat([x, x[:, -1:]], 1)), progress=False, key=key)  # another stack
    torch.manual_seed(9)
    other = image_encoder((4, 84, 84), 8)
    assert weights_key(other) != key and weights_key(enc) == key
    embedded(frames, other, progress=False, key=weights_key(other))
    assert len(list((tmp_path / "store" / "encodings").glob("*.npy"))) == 4 and sum(calls) == 12 + 8
    files[0].write_bytes(b"not an array")
    calls.clear()
    repaired = embedded(frames, encode, progress=False, key=key)
    assert sum(calls) == 12 and torch.equal(repaired.batch(range(3))["obs"], first.batch(range(3))["obs"])
    assert np.load(files[0]).shape == (12, 8)


def test_init_encoder_loads_the_saved_weights_and_freeze_stops_their_training(tmp_path):
    torch.manual_seed(5)
    saved = image_encoder(OBS, 16)
    save_encoder(saved, tmp_path / "enc.pt", {"made_by": "test"})
    model = vizdoom_model(seed=1)
    prepare_encoder(model, TrainConfig(init_encoder=str(tmp_path / "enc.pt"), freeze_encoder=True))
    for (k, v), w in zip(model.enc.obs.state_dict().items(), saved.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    assert not any(p.requires_grad for p in model.enc.obs.parameters())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("enc.obs."))
    assert load_encoder(image_encoder(OBS, 16), tmp_path / "enc.pt") == {"made_by": "test"}

    thawed = vizdoom_model(seed=1)
    prepare_encoder(thawed, TrainConfig(init_encoder=str(tmp_path / "enc.pt")))
    assert all(p.requires_grad for p in thawed.parameters())  # initialised, still trained


def test_pixel_standardisation_is_the_identity_until_fitted_and_travels_with_the_weights(tmp_path):
    """``ImageEncoder``: a fresh encoder computes exactly its layers; fitted, it computes them on
    ``(x − mean) / std`` (per pixel, std at least the floor); the statistics are saved with the weights, reach a
    model through ``--init_encoder`` and change the frozen cache's key; weights written before the
    standardisation existed load as the identity."""
    torch.manual_seed(3)
    enc = image_encoder(OBS, 16)
    x = torch.rand(5, *OBS)
    with torch.no_grad():
        plain = nn.Sequential(*enc)(x)
        assert torch.equal(enc(x), plain)
        key = weights_key(enc)
        frames = torch.rand(64, *OBS) * 0.5 + 0.2
        frames[:, :, :8] = 0.3  # constant rows: their spread is the floor
        enc.set_pixel_stats(frames)
        assert enc.pixel_mean.shape == OBS and torch.allclose(enc.pixel_mean, frames.mean(0))
        assert torch.all(enc.pixel_std[:, :8] == PIXEL_STD_FLOOR) and torch.allclose(enc.pixel_std[:, 8:],
                                                                                     frames.std(0)[:, 8:])
        torch.testing.assert_close(enc(x), nn.Sequential(*enc)((x - frames.mean(0)) / enc.pixel_std))
        assert weights_key(enc) != key
    save_encoder(enc, tmp_path / "enc.pt")
    model = vizdoom_model(seed=1)
    prepare_encoder(model, TrainConfig(init_encoder=str(tmp_path / "enc.pt"), freeze_encoder=True))
    assert torch.equal(model.enc.obs.pixel_std, enc.pixel_std)
    with torch.no_grad():
        assert torch.equal(model.enc.encode_frames(x), enc(x))
    old = {k: v for k, v in enc.state_dict().items() if not k.startswith("pixel_")}
    torch.save({ENCODER_FILE_KEY: old}, tmp_path / "old.pt")
    fresh = image_encoder(OBS, 16)
    load_encoder(fresh, tmp_path / "old.pt")
    assert fresh.pixel_mean.numel() == 1
    with torch.no_grad():
        assert torch.equal(fresh(x), plain)


def test_pixel_norm_fits_a_fresh_encoder_to_the_training_frames(tmp_path):
    """``--pixel_norm`` on a train script: before training, a fresh encoder's standardisation is fitted to
    the first stage's frames (a store smaller than the sample: every step, so exactly their per-pixel mean
    and spread), the encoder still trains, and the flag is a one-line error with a pretrained encoder
    (whose standardisation is its own) or without images."""
    store = make_store(image_episodes([30, 20], seed=4), "disk", tmp_path)
    frames = torch.from_numpy(frames_at(store, np.arange(store.n_steps))).float() / 255
    _, tc = split_args(build_parser("train", {}).parse_args(["--pixel_norm"]), "vizdoom")
    model = vizdoom_model()
    prepare_encoder(model, tc, consecutive(store, 6, obs_transform=uint8_to_float))
    enc = model.enc.obs
    torch.testing.assert_close(enc.pixel_mean, frames.mean(0))
    torch.testing.assert_close(enc.pixel_std, frames.std(0).clamp_min(PIXEL_STD_FLOOR))
    assert all(p.requires_grad for p in model.parameters())
    x = torch.rand(3, *OBS)
    with torch.no_grad():
        standardised = (x - frames.mean(0)) / enc.pixel_std
        torch.testing.assert_close(model.enc.encode_frames(x), nn.Sequential(*enc)(standardised))
    with pytest.raises(ConfigError, match="--pixel_norm fits a fresh encoder") as e:
        TrainConfig(pixel_norm=True, init_encoder="enc.pt").validate()
    assert "\n" not in str(e.value)
    tmaze = RATE(ModelConfig(env="tmaze", model_mode="DT", num_mem_tokens=0, mem_len=0, n_head_ca=0,
                             mrv_act="no_act"))
    with pytest.raises(ConfigError, match="image observations"):
        prepare_encoder(tmaze, TrainConfig(pixel_norm=True))


def test_bad_encoder_files_are_one_line_config_errors(tmp_path):
    save_encoder(image_encoder(OBS, 32), tmp_path / "d32.pt")  # another width
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"model": {}}, tmp_path / "other.pt")
    for name, needle in (("d32.pt", "do not fit"), ("junk.pt", "cannot read"), ("other.pt", "no encoder weights"),
                         ("missing.pt", "cannot read")):
        with pytest.raises(ConfigError, match=needle) as e:
            prepare_encoder(vizdoom_model(), TrainConfig(init_encoder=str(tmp_path / name)))
        assert "\n" not in str(e.value) and name in str(e.value)
    tmaze = RATE(ModelConfig(env="tmaze", model_mode="DT", num_mem_tokens=0, mem_len=0, n_head_ca=0,
                             mrv_act="no_act"))
    with pytest.raises(ConfigError, match="image observations"):
        prepare_encoder(tmaze, TrainConfig(freeze_encoder=True))
