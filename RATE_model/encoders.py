"""Per-environment token encoders and action heads (SPEC §1.2), in one registry keyed by env name.

Discrete actions use an embedding with one extra row: the data's padding value (-10) and the
"no action yet" slot both map to it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from RATE_model.files import atomic_write
from RATE_model.precision import autocast_dtype

ACTION_PAD = -10


@dataclass
class EnvSpec:
    """What the model needs to know about an environment's observations and actions."""

    obs_shape: tuple[int, ...]
    n_actions: int  # discrete: number of actions; continuous: action dimension
    discrete: bool = True


class Encoders(nn.Module):
    """Return-to-go, observation and action encoders plus the action head of one environment."""

    def __init__(self, spec: EnvSpec, rtg: nn.Module, obs: nn.Module, act: nn.Module, head: nn.Module):
        super().__init__()
        self.spec = spec
        self.rtg, self.obs, self.act, self.head = rtg, obs, act, head
        self.images = len(spec.obs_shape) == 3  # frames [C, H, W]

    def encode_frames(self, frames: Tensor) -> Tensor:
        """Frames [N, *obs_shape] (already scaled, e.g. to [0, 1]) -> [N, d]: what :meth:`embed_obs` makes of
        each step's observation."""
        return self.embed_obs(frames[:, None])[:, 0]

    def embed_actions(self, actions: Tensor) -> Tensor:
        """[B, T] long (discrete, -10 = padding) or [B, T, act_dim] float -> [B, T, d]."""
        if self.spec.discrete:
            idx = torch.where(actions < 0, torch.full_like(actions, self.spec.n_actions), actions)
            return self.act(idx.long())
        return self.act(actions)

    def embed_obs(self, obs: Tensor) -> Tensor:
        """[B, T, *obs_shape] -> [B, T, d], images encoded as one flat batch.

        An image environment's observations given as [B, T, d] floats are taken as already encoded: the
        outputs of this encoder cached once for a frozen encoder (``RATE_model.data.embedded``)."""
        B, T = obs.shape[:2]
        if self.images and obs.dim() == 3:
            return obs
        if obs.dim() == 5:  # frames [B, T, C, H, W]: one copy into the conv stack's channels-last order and dtype
            nhwc = obs.permute(0, 1, 3, 4, 2)
            frames = torch.empty(nhwc.shape, dtype=self._frame_dtype(obs.device), device=obs.device).copy_(nhwc)
            return self.obs(frames.view(B * T, *nhwc.shape[2:]).permute(0, 3, 1, 2)).view(B, T, -1)
        return self.obs(obs.reshape(B * T, *obs.shape[2:]).float()).view(B, T, -1)

    def _frame_dtype(self, device: torch.device) -> torch.dtype:
        """bf16 under CPU autocast (the convolutions' dtype: the frames are converted once, with the layout change,
        instead of to fp32 here and to bf16 again by the first convolution), unless the encoder standardises
        pixels first (that runs in fp32); fp32 otherwise."""
        if getattr(self.obs, "standardises", False):
            return torch.float32
        return autocast_dtype(device) or torch.float32


class ChannelsLast(nn.Module):
    """Frames [N, C, H, W] in channels-last memory order, the layout oneDNN's convolutions run fastest in
    (forward + backward of the DQN stack 1.2–1.7× faster in fp32 on a 2-core EPYC, benchmarks/RESULTS.md).
    Only the memory order changes: the values and the flattened feature order are NCHW's."""

    def forward(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def conv_stack(in_ch: int, padding: int = 0) -> nn.Sequential:
    """The DQN convolutions shared by the image environments, weights and activations channels-last."""
    return nn.Sequential(
        ChannelsLast(),
        nn.Conv2d(in_ch, 32, 8, stride=4, padding=padding), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2, padding=padding), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1, padding=padding), nn.ReLU(),
        nn.Flatten(),
    ).to(memory_format=torch.channels_last)


PIXEL_STD_FLOOR = 0.02  # of the [0, 1] pixel range (5 of 255 levels): pixels that never change stay near 0


class ImageEncoder(nn.Sequential):
    """The layers of :func:`image_encoder` after a per-pixel standardisation of the frames (scaled to [0, 1]):
    ``(x − pixel_mean) / pixel_std``, the identity (buffers 0 and 1) until :meth:`set_pixel_stats` fits it
    to data (``python -m RATE_model.tools.pretrain_encoder --pixel_norm``). On Pong's gray screen the ball and
    paddles move a few pixels of a nearly constant frame: frames differ from each other 4× less per pixel than
    Breakout's and the fresh encoder's outputs 12× less relative to their mean, and frame BC stayed at the
    frame-blind floor for 5 000 steps; standardised, the moving pixels stand out and it left the floor within
    250 (Atari/RESULTS_atari.md). The two buffers travel in the weights (``save_encoder``, checkpoints); weight
    files written before they existed load as the identity."""

    def __init__(self, *layers: nn.Module):
        super().__init__(*layers)
        self.register_buffer("pixel_mean", torch.zeros(1))
        self.register_buffer("pixel_std", torch.ones(1))

    @property
    def standardises(self) -> bool:
        """Whether :meth:`set_pixel_stats` fitted it (the identity's scalars skip the two passes)."""
        return self.pixel_mean.numel() > 1

    def forward(self, x: Tensor) -> Tensor:
        if self.standardises:
            x = (x - self.pixel_mean) / self.pixel_std
        return super().forward(x)

    @torch.no_grad()
    def set_pixel_stats(self, frames: Tensor, floor: float = PIXEL_STD_FLOOR) -> None:
        """Fit the standardisation to ``frames`` [N, *obs_shape] in [0, 1]: per-pixel mean and standard
        deviation (at least ``floor``)."""
        x = frames.float()
        dev = self.pixel_mean.device
        self.pixel_mean = x.mean(0).to(dev)
        self.pixel_std = x.std(0).clamp_min(floor).to(dev)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name, identity in (("pixel_mean", 0.0), ("pixel_std", 1.0)):
            key, own = prefix + name, getattr(self, name)
            if key not in state_dict:  # written before the standardisation existed
                state_dict[key] = torch.full((1,), identity)
            setattr(self, name, torch.empty(state_dict[key].shape, dtype=own.dtype, device=own.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def image_encoder(obs_shape: tuple[int, ...], d: int, padding: int = 0, tanh: bool = True) -> ImageEncoder:
    """conv stack -> Linear(-> d) [-> Tanh] (an :class:`ImageEncoder`: its input standardisation is the
    identity until fitted); the flattened width is inferred from ``obs_shape``.

    He initialisation (zero biases): every layer keeps the scale of its input, so an image token starts
    as large as the return and action tokens beside it. PyTorch's default (variance 1/(3·fan_in)) shrinks
    it about 2.5× per layer: on Minigrid frames the embedding started ~40× smaller than the return-to-go
    token, key vs ball 30× closer than now, and RATE did not learn to carry an image cue across segments
    (MinigridMemory/RESULTS_minigrid.md, "Diagnosis").
    """
    convs = conv_stack(obs_shape[0], padding)
    with torch.no_grad():
        flat = convs(torch.zeros(1, *obs_shape)).shape[-1]
    layers: list[nn.Module] = [convs, nn.Linear(flat, d)]
    for m in layers[0]:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    nn.init.kaiming_normal_(layers[1].weight, nonlinearity="linear")
    nn.init.zeros_(layers[1].bias)
    if tanh:
        layers.append(nn.Tanh())
    return ImageEncoder(*layers)


ENCODER_FILE_KEY = "obs_encoder"


def save_encoder(encoder: nn.Module, path: str | Path, info: dict[str, Any] | None = None) -> None:
    """Write an observation encoder's weights (and ``info``: how it was made) for ``--init_encoder``."""
    with atomic_write(path) as f:
        torch.save({ENCODER_FILE_KEY: encoder.state_dict(), "info": info or {}}, f)


def load_encoder(encoder: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights written by :func:`save_encoder` into ``encoder``; returns their ``info``. A missing,
    unreadable or mismatching file is a ValueError naming it."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ValueError(f"cannot read encoder weights {path}: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(saved, dict) or ENCODER_FILE_KEY not in saved:
        raise ValueError(f"{path} holds no encoder weights (expected a file written by save_encoder, e.g. "
                         "python -m RATE_model.tools.pretrain_encoder --save_encoder)")
    try:
        encoder.load_state_dict(saved[ENCODER_FILE_KEY])
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(f"encoder weights {path} do not fit this model's observation encoder: "
                         f"{' '.join(' '.join(first[1:3]).split())[:300]}") from None
    return saved.get("info", {})


def _discrete(spec: EnvSpec, d: int, obs: nn.Module, tanh: bool) -> Encoders:
    act: nn.Module = nn.Embedding(spec.n_actions + 1, d)
    rtg: nn.Module = nn.Linear(1, d)
    if tanh:
        act, rtg = nn.Sequential(act, nn.Tanh()), nn.Sequential(rtg, nn.Tanh())
    return Encoders(spec, rtg, obs, act, nn.Linear(d, spec.n_actions, bias=False))


def _tmaze(d: int, **_: object) -> Encoders:
    spec = EnvSpec((4,), 4)
    return Encoders(spec, nn.Linear(1, d), nn.Linear(4, d),
                    nn.Sequential(nn.Embedding(5, d), nn.Tanh()), nn.Linear(d, 4, bias=False))


def _vizdoom(d: int, **_: object) -> Encoders:
    spec = EnvSpec((3, 64, 112), 5)
    return _discrete(spec, d, image_encoder(spec.obs_shape, d), tanh=True)


def _minigrid(d: int, **_: object) -> Encoders:
    spec = EnvSpec((3, 84, 84), 3)
    return _discrete(spec, d, image_encoder(spec.obs_shape, d, tanh=False), tanh=False)


def _memory_maze(d: int, **_: object) -> Encoders:
    spec = EnvSpec((3, 64, 64), 6)
    return _discrete(spec, d, image_encoder(spec.obs_shape, d, padding=2), tanh=True)


def _atari(d: int, n_actions: int = 4, **_: object) -> Encoders:
    spec = EnvSpec((4, 84, 84), n_actions)
    return _discrete(spec, d, image_encoder(spec.obs_shape, d), tanh=True)


class Standardise(nn.Module):
    """(x − mean) / std with the dataset's statistics as buffers, so a checkpoint carries its normalisation."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _mujoco(d: int, state_dim: int = 17, act_dim: int = 6, state_mean: Sequence[float] | None = None,
            state_std: Sequence[float] | None = None, **_: object) -> Encoders:
    spec = EnvSpec((state_dim,), act_dim, discrete=False)
    norm = Standardise(state_mean if state_mean is not None else [0.0] * state_dim,
                       state_std if state_std is not None else [1.0] * state_dim)
    head = nn.Sequential(nn.Linear(d, act_dim), nn.Tanh())
    return Encoders(spec, nn.Linear(1, d), nn.Sequential(norm, nn.Linear(state_dim, d)), nn.Linear(act_dim, d), head)


class OneHotComponents(nn.Module):
    """Observation components [N, D] (floats) -> [N, width]: each categorical component (``nvec[i]`` > 0
    categories) one-hot, each real one (``nvec[i]`` = 0) standardised, (x − mean) / std with one ``mean`` /
    ``std`` per real component (the training data's; default 0 / 1, as it is); width = sum of categories +
    reals. Standardising matters: PositionOnlyCartPole's pole angle moves by ~0.004 a step, invisible to a
    freshly initialised Linear until divided by its spread."""

    def __init__(self, nvec: Sequence[int], mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        nvec = [int(n) for n in nvec]
        cat = [i for i, n in enumerate(nvec) if n > 0]
        real = [i for i, n in enumerate(nvec) if n == 0]
        sizes = torch.tensor([nvec[i] for i in cat], dtype=torch.long)
        self.register_buffer("cat", torch.tensor(cat, dtype=torch.long), persistent=False)
        self.register_buffer("real", torch.tensor(real, dtype=torch.long), persistent=False)
        self.register_buffer("sizes", sizes, persistent=False)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.norm = Standardise([0.0] * len(real) if mean is None else mean, [1.0] * len(real) if std is None else std)
        if self.norm.mean.shape != (len(real),) or self.norm.std.shape != (len(real),):
            raise ValueError(f"mean and std need one value per real component ({len(real)}), got "
                             f"{tuple(self.norm.mean.shape)} and {tuple(self.norm.std.shape)}")
        self.n_onehot = int(sizes.sum())
        self.width = self.n_onehot + len(real)

    def forward(self, x: Tensor) -> Tensor:
        out = x.new_zeros(x.shape[0], self.width)
        if len(self.cat):  # out-of-range values (never in POPGym's spaces) are clamped, not an index error
            idx = torch.minimum(x[:, self.cat].long().clamp_min(0), self.sizes - 1) + self.offsets
            out.scatter_(1, idx, 1.0)
        if len(self.real):
            out[:, self.n_onehot:] = self.norm(x[:, self.real])
        return out


class Scale(nn.Module):
    """x · factor: continuous actions between the env's units and the model's [-1, 1]."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


def _popgym(d: int, obs_nvec: Sequence[int] = (4,), n_actions: int = 4, discrete: bool = True,
            action_high: float = 1.0, obs_mean: Sequence[float] | None = None, obs_std: Sequence[float] | None = None,
            **_: object) -> Encoders:
    """POPGym (SPEC §4): flat components one-hot / standardised real -> Linear (``obs_mean`` / ``obs_std``: one per
    real component); discrete (MultiDiscrete flattened) or continuous actions in [-action_high, action_high]."""
    spec = EnvSpec((len(obs_nvec),), n_actions, discrete)
    comp = OneHotComponents(obs_nvec, obs_mean, obs_std)
    obs = nn.Sequential(comp, nn.Linear(comp.width, d))
    if discrete:
        return _discrete(spec, d, obs, tanh=False)
    act = nn.Sequential(Scale(1 / action_high), nn.Linear(n_actions, d))
    head = nn.Sequential(nn.Linear(d, n_actions), nn.Tanh(), Scale(action_high))
    return Encoders(spec, nn.Linear(1, d), obs, act, head)


class Bounds(nn.Module):
    """Continuous actions between an env's box [low, high] and the model's [-1, 1]: ``to_unit`` maps the env's
    into the model's (an action-token input), else the model's into the env's (the head's output)."""

    def __init__(self, low: Sequence[float], high: Sequence[float], to_unit: bool):
        super().__init__()
        low_t, high_t = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        self.register_buffer("centre", (high_t + low_t) / 2)
        self.register_buffer("radius", (high_t - low_t) / 2)
        self.to_unit = to_unit

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.centre) / self.radius if self.to_unit else x * self.radius + self.centre


def image_padding(obs_shape: Sequence[int]) -> int:
    """The DQN stack's padding for frames of ``obs_shape`` [C, H, W]: 0 from 36 pixels up (its smallest input), else 2
    (down to 7); smaller frames are a ValueError."""
    side = min(obs_shape[1:])
    if side < 7:
        raise ValueError(f"frames of {tuple(obs_shape)} are too small for the convolution stack (at least 7 × 7)")
    return 0 if side >= 36 else 2


def _generic(d: int, obs_shape: Sequence[int] = (1,), n_actions: int = 2, discrete: bool = True,
            obs_nvec: Sequence[int] | None = None, obs_mean: Sequence[float] | None = None,
            obs_std: Sequence[float] | None = None, action_low: Sequence[float] | None = None,
            action_high: Sequence[float] | None = None, **_: object) -> Encoders:
    """Any vector, categorical or image observations, e.g. a Minari dataset's (``RATE_model.minari_data``) or a
    new env's (docs/adding_an_env.md): frames [C, H, W] through the DQN stack (He-initialised, no
    Tanh, as Minigrid's), or components ``obs_nvec`` one-hot / standardised (``obs_mean`` / ``obs_std`` per real
    one) -> Linear; discrete actions, or continuous ones in [``action_low``, ``action_high``] (unbounded: no Tanh)."""
    spec = EnvSpec(tuple(int(x) for x in obs_shape), n_actions, discrete)
    if len(spec.obs_shape) == 3:
        obs: nn.Module = image_encoder(spec.obs_shape, d, padding=image_padding(spec.obs_shape), tanh=False)
    else:
        comp = OneHotComponents(obs_nvec if obs_nvec is not None else [0] * spec.obs_shape[0], obs_mean, obs_std)
        obs = nn.Sequential(comp, nn.Linear(comp.width, d))
    if discrete:
        return _discrete(spec, d, obs, tanh=False)
    bounded = (action_low is not None and action_high is not None
               and bool(torch.isfinite(torch.as_tensor([*action_low, *action_high])).all()))
    if bounded:
        act = nn.Sequential(Bounds(action_low, action_high, True), nn.Linear(n_actions, d))
        head: nn.Module = nn.Sequential(nn.Linear(d, n_actions), nn.Tanh(), Bounds(action_low, action_high, False))
    else:
        act, head = nn.Linear(n_actions, d), nn.Linear(d, n_actions)
    return Encoders(spec, nn.Linear(1, d), obs, act, head)


ENCODERS: dict[str, Callable[..., Encoders]] = {
    "tmaze": _tmaze,
    "vizdoom": _vizdoom,
    "minigrid": _minigrid,
    "memory_maze": _memory_maze,
    "atari": _atari,
    "mujoco": _mujoco,
    "popgym": _popgym,
    "minari": _generic,
    "generic": _generic,  # for a new environment without encoders of its own
}


def build_encoders(env: str, d_model: int, **env_kwargs: object) -> Encoders:
    """Encoders and head for ``env``; ``env_kwargs`` carries sizes such as n_actions or state_dim."""
    if env not in ENCODERS:
        raise KeyError(f"no encoders registered for env {env!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[env](d_model, **env_kwargs)
