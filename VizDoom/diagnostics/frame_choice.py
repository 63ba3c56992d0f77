"""Can the image encoder learn the colour choice at all? Behaviour cloning from one frame, the pillar's colour
given as an input: no memory, no context, no earlier actions to copy.

    python3 VizDoom/diagnostics/frame_choice.py                          # both colours from the start
    python3 VizDoom/diagnostics/frame_choice.py --first_colour_steps 400 # red-pillar frames first, then both
    python3 VizDoom/diagnostics/frame_choice.py --colours red            # one colour: no choice between colours
    python3 VizDoom/diagnostics/frame_choice.py --train_frames after_pickup  # only the steps that choose an item

The training frames are the colour-dependent steps of the first ``--episodes`` episodes of ``--data_dir``
(those where the expert would act differently had the pillar the other colour); the network is the
models' image encoder (``RATE_model.encoders.image_encoder``) and a small head over its features and a
colour embedding. Every ``--eval_every`` steps it prints one JSON line: the preference for the expert's
action over the other-colour one (``RATE_model.diagnose.preference``) on the held-out episodes'
colour-dependent steps and on those right after a pickup (the choice of the next item), 0.5 where the
colour is not used. With one colour the task is "head for the items of this colour"; with both it is the
conjunction "the items whose colour is the pillar's", the one the sequence models must learn.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from RATE_model.cli import run_main, write_json_lines
from RATE_model.config import ConfigError, OneLineErrorParser, check_positive
from RATE_model.data import episode_files, file_fields
from RATE_model.diagnose import preference
from RATE_model.encoders import image_encoder, save_encoder
from VizDoom.diagnostics.step_loss import HELD_OUT, step_groups
from VizDoom.get_data.generate_iter_data import DATA_DIR
from VizDoom.VizDoom_src.vizdoom_data import N_ACTIONS, OBS_SHAPE, load_episode

FIELDS = ("obs", "action", "action_other_colour", "red", "after_pickup")
COLOURS = ("red", "green")  # the pillar colours (--colours)


def colour_dependent_frames(data_dir: Path, n_episodes: int, colour: str | None = None) -> dict[str, np.ndarray]:
    """The colour-dependent steps of the first ``n_episodes`` episode files (only those of one pillar
    ``colour`` if given): obs uint8 [n, 3, 64, 112], action, action_other_colour (the expert's action had the
    pillar the other colour; the action itself where the files lack it), red, after_pickup (the step right
    after a right item was picked up)."""
    files = episode_files(data_dir)[:n_episodes]
    if not files:
        raise ConfigError(f"no episode files in {data_dir}; run python3 VizDoom/get_data/generate_iter_data.py "
                          f"--out_dir {data_dir}")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
    for f in files:
        try:
            side = file_fields(f, ("is_red", "colour_dependent", "action_other_colour"))
        except Exception:  # an unreadable file: the loader's one-line error names it
            side = {}
        if "is_red" not in side:
            load_episode(f)
        if "colour_dependent" not in side:
            raise ConfigError(f"{f} has no colour_dependent field: regenerate it with generate_iter_data.py")
        red = bool(side["is_red"][0])
        if colour is not None and red != (colour == "red"):
            continue  # the frames of the other colour are never read
        ep, dep = load_episode(f), side["colour_dependent"]
        other = side.get("action_other_colour", ep["action"])
        g = step_groups(dep[None], np.zeros(1, np.int64), ep["action"][None], ep["reward"][None])
        m = g["colour_dependent"][0]
        for k, v in (("obs", ep["obs"]), ("action", ep["action"]), ("action_other_colour", other),
                     ("red", np.full(len(m), red)), ("after_pickup", g["colour_dependent_after_pickup"][0])):
            parts[k].append(v[m])
    return {k: np.concatenate(v) for k, v in parts.items()}


class FramePolicy(nn.Module):
    """Action logits from one frame (the models' image encoder) and the pillar's colour (an embedding)."""

    def __init__(self, d: int = 64, hidden: int = 128):
        super().__init__()
        self.encoder = image_encoder(OBS_SHAPE, d)
        self.colour = nn.Embedding(2, d)
        self.head = nn.Sequential(nn.Linear(2 * d, hidden), nn.ReLU(), nn.Linear(hidden, N_ACTIONS))

    def forward(self, obs: Tensor, red: Tensor) -> Tensor:
        return self.head(torch.cat([self.encoder(obs.float() / 255.0), self.colour(red.long())], -1))


@torch.no_grad()
def evaluate(net: FramePolicy, frames: dict[str, np.ndarray], batch_size: int = 1024) -> dict[str, Any]:
    """Preference for the expert's action over the other-colour one on all of ``frames`` and on those right
    after a pickup, and the argmax accuracy."""
    net.eval()
    logp = torch.cat([F.log_softmax(net(torch.from_numpy(frames["obs"][i:i + batch_size]),
                                        torch.from_numpy(frames["red"][i:i + batch_size])), -1)
                      for i in range(0, len(frames["obs"]), batch_size)]).numpy()
    net.train()
    chosen, other = frames["action"], frames["action_other_colour"]
    return {"accuracy": float((logp.argmax(1) == chosen).mean()),
            "colour_dependent": preference(logp, chosen, other, np.ones(len(chosen), bool)),
            "after_pickup": preference(logp, chosen, other, frames["after_pickup"])}


def train(frames: dict[str, np.ndarray], heldout: dict[str, np.ndarray], steps: int, batch_size: int = 256,
          lr: float = 3e-4, first_colour_steps: int = 0, eval_every: int = 100, seed: int = 0,
          log: Any = print) -> tuple[FramePolicy, list[dict[str, Any]]]:
    """Train a :class:`FramePolicy` for ``steps`` AdamW steps on random minibatches of ``frames`` (the first
    ``first_colour_steps`` from its red-pillar frames only); returns it and the held-out evaluations, each
    also passed to ``log``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = FramePolicy()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.1)
    red = np.flatnonzero(frames["red"])
    if first_colour_steps and not len(red):
        raise ConfigError("--first_colour_steps needs red-pillar frames in the training data")
    rows, t0 = [], time.time()
    for step in range(1, steps + 1):
        idx = red[rng.integers(len(red), size=batch_size)] if step <= first_colour_steps \
            else rng.integers(len(frames["obs"]), size=batch_size)
        logits = net(torch.from_numpy(frames["obs"][idx]), torch.from_numpy(frames["red"][idx]))
        loss = F.cross_entropy(logits, torch.from_numpy(frames["action"][idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            rows.append({"step": step, "seconds": round(time.time() - t0, 1), "train_loss": float(loss.detach()),
                         "stage": "red" if step <= first_colour_steps else "all", **evaluate(net, heldout)})
            log(json.dumps(rows[-1]))
    return net, rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = OneLineErrorParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=DATA_DIR)
    p.add_argument("--heldout_dir", type=Path, default=HELD_OUT)
    p.add_argument("--episodes", type=int, default=3000, help="training episodes (first N files)")
    p.add_argument("--heldout_episodes", type=int, default=500)
    p.add_argument("--colours", choices=("both", *COLOURS), default="both",
                   help="train and evaluate on the frames of both pillar colours or of one")
    p.add_argument("--train_frames", choices=("colour_dependent", "after_pickup"), default="colour_dependent",
                   help="train on every colour-dependent step, or only on those right after a pickup (the few "
                        "steps where a sequence model cannot follow the trajectory; evaluation is unchanged)")
    p.add_argument("--first_colour_steps", type=int, default=0,
                   help="a curriculum: this many first steps on the red-pillar frames only")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval_every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the evaluations here, one JSON line each")
    p.add_argument("--save_encoder", type=Path,
                   help="write the trained image encoder here, for train_vizdoom.py --init_encoder (the sequence "
                        "models' observation encoder: same layers)")
    args = p.parse_args(argv)
    check_positive(args, ("episodes", "heldout_episodes", "steps", "batch_size", "eval_every"))
    if not (np.isfinite(args.lr) and args.lr > 0):
        raise ConfigError(f"--lr must be a positive number, got {args.lr}")
    if args.first_colour_steps < 0:
        raise ConfigError(f"--first_colour_steps must be >= 0, got {args.first_colour_steps}")
    colour = None if args.colours == "both" else args.colours
    frames = colour_dependent_frames(args.data_dir, args.episodes, colour)
    if args.train_frames == "after_pickup":
        frames = {k: v[frames["after_pickup"]] for k, v in frames.items()}
        if not len(frames["obs"]):
            raise ConfigError(f"no colour-dependent step right after a pickup in the first {args.episodes} episodes")
    heldout = colour_dependent_frames(args.heldout_dir, args.heldout_episodes, colour)
    net, rows = train(frames, heldout, args.steps, args.batch_size, args.lr, args.first_colour_steps, args.eval_every,
                      args.seed)
    if args.save_encoder:
        save_encoder(net.encoder, args.save_encoder, {"script": "frame_choice.py", "args": vars(args) | {
            k: str(v) for k, v in vars(args).items() if isinstance(v, Path)}, "last_evaluation": rows[-1]})
    if args.out:
        write_json_lines(args.out, rows)
    return rows


if __name__ == "__main__":
    run_main(main)
