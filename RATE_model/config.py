"""Configuration: the network and training dataclasses, their validation, and the shared CLI flags.

Every ``train_*.py`` builds its parser with :func:`build_parser`, so a flag means the same thing in
every environment. Invalid combinations raise :class:`ConfigError` naming the offending flags; the
entry points print that message on one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_MODES = ("RATE", "DT", "DTXL", "RATEM", "RATE_wo_nmt", "BC_MLP", "BC_LSTM")
BC_MODES = ("BC_MLP", "BC_LSTM")  # behaviour cloning without return-to-go: RATE_model.bc
ARCH_MODES = ("TrXL", "TrXL-I", "GTrXL")
MRV_ACTS = ("no_act", "relu", "leaky_relu", "elu", "tanh")
MEMORY_GRADS = ("bptt", "detach")
PRECISIONS = ("auto", "fp32", "bf16")  # RATE_model.precision resolves auto
MEMORY_NOISE = ("none", "tokens", "cache", "both")  # --eval_memory_noise (RATE_model.rollout.memory_noise)


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the flags involved."""


@dataclass
class ModelConfig:
    """The RATE network. Baselines are the same network with parts switched off (see ``model_mode``)."""

    env: str = "tmaze"  # key of the encoder/head registry (RATE_model.encoders)
    model_mode: str = "RATE"  # RATE | DT | DTXL | RATEM | RATE_wo_nmt | BC_MLP | BC_LSTM
    arch_mode: str = "TrXL"  # TrXL | TrXL-I | GTrXL
    context_length: int = 30  # K: env steps per segment
    sections: int = 3  # N: segments per training trajectory window
    n_layer: int = 8
    n_head: int = 10
    d_model: int = 64
    d_head: int = 64
    d_inner: int = 64
    dropout: float = 0.05
    dropatt: float = 0.0
    num_mem_tokens: int = 5  # m (``--nmt``)
    mem_len: int = 0  # Transformer-XL hidden-state cache length
    n_head_ca: int = 4  # MRV heads; 0 = plain RMT memory update
    mrv_act: str = "relu"
    skip_dec_ffn: bool = False
    memory_grad: str = "bptt"  # bptt | detach
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # encoder sizes (n_actions, state_dim, ...)

    def effective(self) -> ModelConfig:
        """The configuration the network really runs with once ``model_mode`` is applied (SPEC §1.7)."""
        c = dataclasses.replace(self, env_kwargs=dict(self.env_kwargs))
        if c.model_mode in ("DT", "DTXL"):
            c.context_length, c.sections = c.context_length * c.sections, 1
            c.num_mem_tokens, c.n_head_ca = 0, 0
            if c.model_mode == "DT":
                c.mem_len = 0
        elif c.model_mode == "RATEM":
            c.mem_len = 0
        elif c.model_mode == "RATE_wo_nmt":
            c.num_mem_tokens, c.n_head_ca = 0, 0
        elif c.model_mode in BC_MODES:  # no transformer: no memory tokens, no cache (RATE_model.bc)
            c.num_mem_tokens, c.n_head_ca, c.mem_len = 0, 0, 0
        return c

    def validate(self) -> ModelConfig:
        """Raise ConfigError for a combination that cannot run; return self."""
        choices = {"model_mode": MODEL_MODES, "arch_mode": ARCH_MODES, "mrv_act": MRV_ACTS,
                   "memory_grad": MEMORY_GRADS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        positive = ("context_length", "sections", "n_layer", "n_head", "d_model", "d_head", "d_inner")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_mem_tokens", "mem_len", "n_head_ca"):
            if getattr(self, name) < 0:
                flag = "nmt" if name == "num_mem_tokens" else name
                raise ConfigError(f"--{flag} must be >= 0, got {getattr(self, name)}")
        for name in ("dropout", "dropatt"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"--{name} must be in [0, 1), got {getattr(self, name)}")
        if self.d_model % 2:
            raise ConfigError(f"--d_model {self.d_model} must be even (sinusoidal position features)")
        e = self.effective()
        if e.n_head_ca > 0 and e.num_mem_tokens == 0:
            raise ConfigError(f"--n_head_ca {self.n_head_ca} needs memory tokens, but --nmt is 0 "
                              f"(use --n_head_ca 0 for a model without memory)")
        if e.n_head_ca > 0 and e.d_model % e.n_head_ca:
            raise ConfigError(f"--n_head_ca {self.n_head_ca} must divide --d_model {self.d_model}")
        return self


@dataclass
class TrainConfig:
    """Optimisation, bookkeeping and evaluation budget of one run."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 3e-4
    lr_end_factor: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    warmup_steps: int = 100
    lr_schedule: str = "linear"  # linear | cosine (decay after warm-up)
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    ckpt_every: int = 0  # optimizer steps between checkpoints; 0 = only at the end of each epoch
    log_every: int = 10
    precision: str = "auto"  # auto | fp32 | bf16 autocast of forward passes (RATE_model.precision)
    grad_checkpoint: bool = False  # recompute each layer in backward, keep only layer inputs (less memory)
    num_workers: int = -1  # DataLoader worker processes reading batches ahead; -1 = auto (0 for data in RAM)
    eval_every: int = 0  # optimizer steps between validation evaluations (best.pt); 0 = none
    init_encoder: str | None = None  # observation encoder weights to start from (RATE_model.encoders.save_encoder)
    freeze_encoder: bool = False  # keep the observation encoder fixed; its outputs are computed once per run
    pixel_norm: bool = False  # fit a fresh image encoder's per-pixel standardisation to the training frames

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the flag for a value that cannot work; return self."""
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < -1:
            raise ConfigError(f"--num_workers must be >= 0 (or -1 for auto), got {self.num_workers}")
        for name in ("warmup_steps", "ckpt_every", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.pixel_norm and self.init_encoder:
            raise ConfigError("--pixel_norm fits a fresh encoder; one from --init_encoder keeps the standardisation "
                              "it was pretrained with (tools.pretrain_encoder --pixel_norm)")
        for name in ("lr_end_factor", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"--{name} must be a finite number >= 0, got {v}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.lr_schedule not in ("linear", "cosine"):
            raise ConfigError(f"lr_schedule {self.lr_schedule!r} is not one of linear, cosine")
        return self


def str2bool(value: str | bool) -> bool:
    """Parse the paper code's string booleans (``--curr 'true'``)."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("true", "1", "yes", "y", "t"):
        return True
    if v in ("false", "0", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line (no usage dump) and refuses NaN and infinity for every
    number-valued flag (``float``, :func:`float_list`, ...): no range check would
    catch ``nan`` (every comparison with it is false), so it would reach training or sampling."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(ns, action.dest, None)
            if value is action.default:  # defaults are the script's own choice, not user input
                continue
            items = value if isinstance(value, (list, tuple)) else (value,)
            bad = next((v for v in items if isinstance(v, float) and not math.isfinite(v)), None)
            if bad is not None:
                name = "/".join(action.option_strings) or action.metavar or action.dest
                self.error(f"argument {name}: expected a finite number, got {bad}")
        return ns, extras


def build_parser(description: str, defaults: dict[str, Any]) -> argparse.ArgumentParser:
    """The flags every train script shares; ``defaults`` come from the environment's config.yaml."""
    p = OneLineErrorParser(description=description, allow_abbrev=False)
    g = p.add_argument_group("model")
    g.add_argument("--model_mode", choices=MODEL_MODES,
                   help="RATE | DT | DTXL | RATEM | RATE_wo_nmt, or the behaviour-cloning baselines BC_MLP (each step "
                        "from its observation alone) and BC_LSTM (an LSTM over observations and past actions, its "
                        "state carried across segments); both use --n_layer, --d_model, --d_inner, --dropout")
    g.add_argument("--arch_mode", choices=ARCH_MODES, help="decoder layer variant")
    g.add_argument("--nmt", "--num_mem_tokens", dest="num_mem_tokens", type=int, help="memory tokens m")
    g.add_argument("--mem_len", type=int, help="Transformer-XL hidden-state cache length")
    g.add_argument("--n_head_ca", type=int, help="Memory Retention Valve heads (0 = RMT update)")
    g.add_argument("--mrv_act", choices=MRV_ACTS, help="activation before the MRV")
    g.add_argument("--skip_dec_ffn", action="store_true", default=None, help="drop the FFN sub-block")
    g.add_argument("--skip_dec_attn", dest="skip_dec_ffn", action="store_true", default=None,
                   help="alias of --skip_dec_ffn (the paper README's spelling; no such flag exists in the "
                        "released code)")
    g.add_argument("--n_layer", type=int)
    g.add_argument("--n_head", type=int)
    g.add_argument("--d_model", type=int)
    g.add_argument("--d_head", type=int)
    g.add_argument("--d_inner", type=int)
    g.add_argument("--dropout", type=float)
    g.add_argument("--dropatt", type=float)
    g.add_argument("--context_length", "--segment_length", dest="context_length", type=int,
                   help="K: env steps per segment")
    g.add_argument("--sections", "--number_of_segments", dest="sections", type=int,
                   help="N: segments per training window")
    g.add_argument("--memory_grad", choices=MEMORY_GRADS,
                   help="bptt: gradients flow through memory across segments (default); "
                        "detach: the paper code's behaviour (one optimizer step per segment)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch_size", type=int)
    t.add_argument("--lr", "--learning_rate", dest="lr", type=float)
    t.add_argument("--lr_end_factor", type=float)
    t.add_argument("--lr_schedule", choices=("linear", "cosine"),
                   help="decay after warm-up to lr_end_factor × lr: linear (default) or cosine")
    t.add_argument("--weight_decay", type=float)
    t.add_argument("--warmup_steps", type=int)
    t.add_argument("--grad_clip", type=float)
    t.add_argument("--init_encoder", help="start the observation encoder from these weights (a file written by "
                                          "RATE_model.encoders.save_encoder, e.g. python -m "
                                          "RATE_model.tools.pretrain_encoder --save_encoder): a pretrained image "
                                          "encoder")
    t.add_argument("--freeze_encoder", action="store_true", default=None,
                   help="do not train the observation encoder (image environments): every stored frame is encoded "
                        "once per run and training skips the encoder (with --init_encoder: a pretrained one)")
    t.add_argument("--pixel_norm", action="store_true", default=None,
                   help="standardise each pixel of the frames (image environments) by its mean and spread over "
                        "4 096 training observations before the encoder, fitted before training and saved with "
                        "the weights: a faint object on a constant screen (Pong) stands out. A pretrained "
                        "encoder (--init_encoder) keeps the standardisation it was pretrained with")
    t.add_argument("--seed", type=int, help="run one seed S (overrides --start_seed/--end_seed): seeds Python, NumPy, "
                                           "torch, the data order and dropout")
    t.add_argument("--start_seed", type=int, help="first training seed run (inclusive)")
    t.add_argument("--end_seed", type=int, help="last training seed run (inclusive)")
    t.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    t.add_argument("--ckpt_every", type=int, help="optimizer steps between checkpoints (0: end of each epoch)")
    t.add_argument("--log_every", type=int, help="optimizer steps between metrics.jsonl rows")
    t.add_argument("--precision", choices=PRECISIONS,
                   help="auto (default): bf16 autocast on a CPU with native bf16 (avx512_bf16 or AMX), fp32 "
                        "elsewhere (CUDA included); fp32 / bf16 force one. Weights, optimizer and loss stay fp32")
    t.add_argument("--amp_bf16", dest="precision", action="store_const", const="bf16", default=None,
                   help="alias of --precision bf16")
    t.add_argument("--grad_checkpoint", action="store_true", default=None,
                   help="per-layer gradient checkpointing: ~1/3 more compute, activations of only the layer inputs")
    t.add_argument("--num_workers", type=int, help="DataLoader processes reading batches from the episode store "
                                                   "ahead of training (default -1: none for data in RAM, else half "
                                                   "the cores, at most 4)")
    r = p.add_argument_group("run")
    r.add_argument("--ckpt_folder", help="run name; the run directory is runs/<env>/<ckpt_folder>")
    r.add_argument("--text", help="free-text comment stored with the run")
    r.add_argument("--runs_dir", help="root folder of run directories (default: runs)")
    r.add_argument("--resume", help="checkpoint path, or 'latest' for this run's newest checkpoint")
    r.add_argument("--no_wandb", action="store_true", help="do not log to Weights & Biases")
    r.add_argument("--wandb_timeout", type=float, default=30.0,
                   help="seconds to wait for the W&B server before logging offline (default 30)")
    r.add_argument("--smoke", action="store_true", help="tiny data, model and evaluation: whole pipeline in < 1 min")
    v = p.add_argument_group("inspection")
    v.add_argument("--eval_every", type=int,
                   help="evaluate on the validation seeds every N optimizer steps and after the last, keep the best "
                        "as checkpoints/best.pt, and report last and best_on_validation on the test seeds (0: off)")
    v.add_argument("--val_episodes", type=int, help="validation episodes per evaluation (default: the env's)")
    v.add_argument("--eval_memory_noise", choices=MEMORY_NOISE, default="none",
                   help="memory ablation at evaluation: replace the memory tokens each segment reads, the "
                        "hidden-state cache, or both by Gaussian noise of their own mean and std (any checkpoint: "
                        "--resume PATH --ckpt_folder NEW)")
    p.set_defaults(start_seed=1, end_seed=1)
    p.set_defaults(**defaults)
    return p


def add_episode_data_flags(p: argparse.ArgumentParser, title: str, data_dir: Path, made_by: str) -> Any:
    """The flags of a train script that reads a folder of generated episodes; returns the group for more."""
    g = p.add_argument_group(title)
    g.add_argument("--data_dir", type=Path, default=data_dir, help=f"folder of {made_by} episodes")
    g.add_argument("--max_episodes", type=int, help="train on only the first this many episodes")
    return g


def add_eval_flags(g: Any, max_steps: int | None = None, episodes: str = "evaluation episodes (fixed env seeds)",
                   batch: str | None = "episodes stepped together (worker processes; default: all)") -> None:
    """The shared evaluation budget flags, declared here once for every env: ``--eval_episodes``,
    ``--eval_max_steps`` (when the env has a step limit ``max_steps``) and ``--eval_batch_size`` (when ``batch``
    says what it batches). Checked by :func:`check_eval_flags`."""
    g.add_argument("--eval_episodes", type=int, help=episodes)
    if max_steps is not None:
        g.add_argument("--eval_max_steps", type=int, help=f"steps per evaluation episode (at most {max_steps})")
    if batch is not None:
        g.add_argument("--eval_batch_size", type=int, help=batch)


def check_eval_flags(args: argparse.Namespace, max_steps: int | None = None, limit: str = "") -> None:
    """ConfigError for an evaluation budget that cannot work; ``limit`` says where ``max_steps`` comes from."""
    check_positive(args, [n for n in ("eval_episodes", "eval_max_steps", "eval_batch_size") if hasattr(args, n)])
    if max_steps is not None and getattr(args, "eval_max_steps", None) and args.eval_max_steps > max_steps:
        raise ConfigError(f"--eval_max_steps must be <= {max_steps} ({limit}), got {args.eval_max_steps}")


def add_store_flags(g: Any, store_default: str, windows_default: str = "one per transition") -> None:
    """The flags of a train script that reads an episode store: ``--store_dir``, ``--windows_per_epoch`` and
    ``--window_starts``, declared here once (``store_default`` and ``windows_default`` say what each env
    does without them)."""
    from RATE_model.data import WINDOW_STARTS, WINDOW_STARTS_HELP

    g.add_argument("--store_dir", type=Path, help=f"where the episode store goes (default: {store_default})")
    g.add_argument("--windows_per_epoch", type=int, help=f"training windows per epoch (default: {windows_default})")
    g.add_argument("--window_starts", choices=WINDOW_STARTS, help=WINDOW_STARTS_HELP)


def add_target_return_flag(g: Any, default: str, several: bool = True) -> None:
    """``--target_return``, declared here once: the initial return-to-go at evaluation, always a list of
    numbers separated by commas; an env whose protocol evaluates one target at a time (``several`` False)
    takes one value in training (``tools.evaluate`` plays each value in turn)."""
    what = "several separated by commas" if several else "one value; tools.evaluate takes several"
    g.add_argument("--target_return", type=float_list, help=f"initial return-to-go at evaluation, {what} "
                                                            f"(default: {default})")


def int_list(text: str) -> list[int]:
    """argparse type: integers separated by commas or spaces (e.g. corridor lengths ``30,90,270``)."""
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def float_list(text: str) -> tuple[float, ...]:
    """argparse type: numbers separated by commas (e.g. target returns ``6000,12000``)."""
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """argparse type: names from ``allowed`` separated by commas (e.g. policies ``visible,random``)."""
    def parse(text: str) -> list[str]:
        names = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in names if x not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"expected names among {','.join(allowed)} separated by commas, "
                                             f"got {text!r}")
        return names
    return parse


def check_positive(args: argparse.Namespace, names: Sequence[str]) -> None:
    """ConfigError naming the flag for any of ``names`` that is set and below 1."""
    for name in names:
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name} must be >= 1, got {v}")


SEED_MAX = 2**32 - 1  # NumPy's seed range; training seeds also feed torch generators as seed * 100 003 + epoch


def check_seeds(args: argparse.Namespace, names: Sequence[str] = ("seed", "start_seed", "end_seed")) -> None:
    """ConfigError naming the flag for any of ``names`` that the script has, is set, and lies outside
    0..SEED_MAX (NumPy refuses negative seeds, which would stop a run only once it draws its first batch)."""
    for name in names:
        v = getattr(args, name, None)
        if v is not None and not 0 <= v <= SEED_MAX:
            raise ConfigError(f"--{name} must be in 0..{SEED_MAX}, got {v}")


def explicit_dests(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The ``dest`` of every flag given explicitly in ``argv`` (default: sys.argv)."""
    import sys

    given = {a.split("=", 1)[0] for a in (sys.argv[1:] if argv is None else argv) if a.startswith("--")}
    return {a.dest for a in parser._actions if given.intersection(a.option_strings)}


def apply_smoke(args: argparse.Namespace, explicit: set[str], smoke: dict[str, Any]) -> None:
    """Under ``--smoke``, replace every setting in ``smoke`` that the user did not give explicitly."""
    if args.smoke:
        for k, v in smoke.items():
            if k not in explicit:
                setattr(args, k, v)


def parse_with_smoke(parser: argparse.ArgumentParser, argv: list[str] | None,
                     smoke: dict[str, Any]) -> tuple[argparse.Namespace, set[str]]:
    """Parse a train script's flags; under ``--smoke`` apply ``smoke`` (one seed) to what was not given.
    Returns the flags and the ``dest`` of those given explicitly."""
    args = parser.parse_args(argv)
    explicit = explicit_dests(parser, argv)
    apply_smoke(args, explicit, {**smoke, "end_seed": args.start_seed})
    return args, explicit


def split_args(args: argparse.Namespace, env: str | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Model and train configs from parsed flags (unknown keys are left to the caller); with ``env``,
    the model config is set to that environment and both are validated, with the seed flags."""
    ns = vars(args)
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    mc = ModelConfig(**{k: v for k, v in ns.items() if k in model_fields and v is not None})
    tc = TrainConfig(**{k: v for k, v in ns.items() if k in train_fields and v is not None})
    if isinstance(tc.betas, list):
        tc.betas = tuple(tc.betas)
    if env is not None:  # both checked here, before the script builds or reads any data
        mc.env = env
        mc.validate()
        tc.validate()
        check_positive(args, [n for n in ("val_episodes",) if hasattr(args, n)])
        check_seeds(args, ("seed", "start_seed", "end_seed", "data_seed"))
    return mc, tc
