"""Why no model read the Minigrid-Memory cue: the two measurements behind RESULTS_minigrid.md "Diagnosis".

    python3 MinigridMemory/diagnostics/diagnose_cue.py expert --sizes 11,31 --episodes 400
    python3 MinigridMemory/diagnostics/diagnose_cue.py image --segments 2,3 --inits he,pytorch --seeds 1,2,3

``expert``: is the expert's one cue-dependent action predictable from what the agent has seen? For the
first expert (``look_first=False``) it is the turn at the junction; for the current one, the action
taken while the first junction object is in view (go ahead or turn round). Prints the rate of the
action by cue alone and by cue together with what decides it.

``image``: the image-cue T-Maze (``image_cue.py``) trained with the project's trainer: RATE (memory
only) and a K-step DT, with the image encoder's He initialisation or PyTorch's layer defaults. Prints,
per run, the step at which the training loss leaves the cue-blind floor, the success rate on 100
corridors, and the gradient / probe diagnostics before and after training. Writes the whole record to
``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from MinigridMemory.diagnostics import image_cue
from MinigridMemory.MinigridMemory_src.expert import MemoryExpert
from MinigridMemory.MinigridMemory_src.minigrid_env import FORWARD, LEFT, MinigridMemory, check_size
from RATE_model.cli import run_main
from RATE_model.config import SEED_MAX, ConfigError, OneLineErrorParser, check_positive, int_list


def decisive_action(size: int, seed: int, look_first: bool) -> dict[str, Any]:
    """Run one ε = 0 expert episode and return its cue, the decisive action and what the agent saw."""
    env = MinigridMemory(size)
    env.reset(seed)
    expert = MemoryExpert(env, 0.0, np.random.default_rng(seed), look_first)
    expert.reset()
    g = env.env
    mid = g.height // 2
    record: dict[str, Any] = {"cue": expert.cue_type, "match_north": expert.success[1] < mid}
    done, t = False, 0
    while not done:
        if "action" not in record and g.in_view(1, mid - 1):  # where MemoryEnv puts the cue
            record["last_cue_step"] = t
        a = expert.act()
        x, y = int(g.agent_pos[0]), int(g.agent_pos[1])
        if "action" not in record and expert.cue_seen:
            in_view = [g.in_view(*p) for p in expert.junction_objects]
            if look_first and any(in_view):  # first time a junction object is in view
                seen = g.grid.get(*expert.junction_objects[in_view.index(True)]).type
                record.update(action=a, seen=seen, step=t)
            elif not look_first and (x, y) == (expert.success[0], mid) and a != FORWARD:  # the turn
                record.update(action=a, step=t)
        _, _, done, _ = env.step(a)
        expert.observe()
        t += 1
    record["length"] = t
    return record


def expert_table(sizes: list[int], episodes: int) -> list[dict[str, Any]]:
    """Rates of the decisive action for both experts: by cue alone, and by what actually decides it."""
    rows = []
    for size in sizes:
        for look_first in (False, True):
            recs = [decisive_action(size, s, look_first) for s in range(episodes)]
            if look_first:  # decisive action: FORWARD (the seen object matches) or a turn
                by_cue = {c: np.mean([r["action"] == FORWARD for r in recs if r["cue"] == c]) for c in ("key", "ball")}
                match = [r["action"] == FORWARD for r in recs if r["seen"] == r["cue"]]
                other = [r["action"] == FORWARD for r in recs if r["seen"] != r["cue"]]
                decided = {"seen object matches cue": np.mean(match), "seen object differs": np.mean(other)}
                what = "go ahead (FORWARD)"
            else:  # decisive action: the turn, LEFT (north) or RIGHT (south)
                by_cue = {c: np.mean([r["action"] == LEFT for r in recs if r["cue"] == c]) for c in ("key", "ball")}
                decided = {"match north (unseen)": np.mean([r["action"] == LEFT for r in recs if r["match_north"]]),
                           "match south (unseen)": np.mean([r["action"] == LEFT for r in recs if not r["match_north"]])}
                what = "turn LEFT"
            counts = Counter(r["cue"] for r in recs)
            gaps = [r["step"] - r["last_cue_step"] for r in recs]
            rows.append({"size": size, "expert": "look first" if look_first else "first version (privileged turn)",
                         "action": what, "rate_by_cue": {k: float(v) for k, v in by_cue.items()},
                         "rate_by_decider": {k: float(v) for k, v in decided.items()},
                         "episodes": episodes, "cue_counts": dict(counts),
                         "steps_from_last_cue_frame_to_decision": {"min": int(min(gaps)), "mean": float(np.mean(gaps))},
                         "length": {"mean": float(np.mean([r["length"] for r in recs])),
                                    "max": int(max(r["length"] for r in recs))}})
    return rows


def image_runs(segments: list[int], inits: list[str], seeds: list[int], K: int, epochs: int,
               dt: bool, full_dt: bool) -> list[dict[str, Any]]:
    """Train RATE (and a K-step DT, and a DT whose one context holds the whole corridor) on the image-cue
    corridor for every (segments, init, seed)."""
    rows = []
    jobs = [("RATE", N, init, seed) for N in segments for init in inits for seed in seeds]
    if dt:
        jobs += [("DT", N, "he", seed) for N in segments for seed in seeds]
    if full_dt:
        jobs += [("DT-full", N, init, seed) for N in segments for init in inits for seed in seeds]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (mode, N, init, seed) in enumerate(jobs):
            t0 = time.time()
            if mode == "DT-full":  # one context of K·N steps: no memory needed, the cue is always in view
                model = image_cue.cue_model("DT", K * N, 1, init, seed)
            else:
                model = image_cue.cue_model(mode, K, N, init, seed)
            before = image_cue.cue_diagnostics(model) if mode == "RATE" else {}
            corridor_segments = 1 if mode == "DT-full" else N  # in units of the model's own K
            losses, success = image_cue.train_on_cue(model, corridor_segments, Path(tmp) / str(i), epochs, seed=seed)
            after = image_cue.cue_diagnostics(model) if mode == "RATE" else {}
            floor = image_cue.cue_floor(K, N)  # DT: N windows of K steps per corridor, one decisive step
            mean20 = np.convolve(losses, np.ones(20) / 20, mode="valid")
            below = np.flatnonzero(mean20 < floor / 2)
            rows.append({"model": mode, "segments": N, "K": K, "init": init, "seed": seed, "steps": len(losses),
                         "floor": floor, "left_floor_at": int(below[0] + 20) if len(below) else None,
                         "success": success, "seconds": round(time.time() - t0, 1),
                         "loss_every_20": [round(float(np.mean(losses[j:j + 20])), 4)
                                           for j in range(0, len(losses), 20)],
                         "before": before, "after": after})
            r = rows[-1]
            print(f"{mode:7} N={N} init={init:7} seed={seed}: success {success:.2f}, loss left the floor at step "
                  f"{r['left_floor_at']} of {len(losses)} ({r['seconds']} s)", flush=True)
    return rows


def inits(text: str) -> list[str]:
    names = text.split(",")
    if not set(names) <= {"he", "pytorch"}:
        raise argparse.ArgumentTypeError(f"--inits takes he and/or pytorch, got {text!r}")
    return names


def check_args(args: argparse.Namespace) -> None:
    """Values that cannot work, before any episode is played or model trained."""
    if args.part == "expert":
        for size in args.sizes:
            try:
                check_size(size)
            except ValueError as e:
                raise ConfigError(f"--sizes: {e}") from None
        check_positive(args, ("episodes",))
        return
    check_positive(args, ("context_length", "epochs"))
    if min(args.segments) < 1:
        raise ConfigError(f"--segments must all be >= 1, got {args.segments}")
    if args.context_length * min(args.segments) < 2:
        raise ConfigError(f"--context_length x --segments must be >= 2 (the corridor's length), got "
                          f"{args.context_length} x {min(args.segments)}")
    bad = [s for s in args.seeds if not 0 <= s <= SEED_MAX]
    if bad:
        raise ConfigError(f"--seeds must lie in 0..{SEED_MAX}, got {bad[0]}")


def main(argv: list[str] | None = None) -> None:
    p = OneLineErrorParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = p.add_subparsers(dest="part", required=True)  # sub-parsers are OneLineErrorParsers too
    e = sub.add_parser("expert", help="is the expert's cue-dependent action learnable from observations?")
    e.add_argument("--sizes", type=int_list, default=[11, 31])
    e.add_argument("--episodes", type=int, default=400)
    i = sub.add_parser("image", help="train on the image-cue corridor; gradients and probes")
    i.add_argument("--segments", type=int_list, default=[2, 3])
    i.add_argument("--inits", type=inits, default=["he", "pytorch"], help="comma-separated: he, pytorch")
    i.add_argument("--seeds", type=int_list, default=[1, 2, 3])
    i.add_argument("--context_length", type=int, default=3)
    i.add_argument("--epochs", type=int, default=60)
    i.add_argument("--no_dt", action="store_true", help="skip the K-step DT runs")
    i.add_argument("--full_dt", action="store_true", help="also train a DT whose context is the whole corridor")
    for q in (e, i):
        q.add_argument("--out", type=Path, help="write the record as JSON here")
    args = p.parse_args(argv)
    check_args(args)
    if args.part == "expert":
        rows = expert_table(args.sizes, args.episodes)
        for r in rows:
            print(f"{r['size']}x{r['size']} {r['expert']}: rate of '{r['action']}' by cue {r['rate_by_cue']}, "
                  f"by {r['rate_by_decider']}; steps from the last cue frame to the decision "
                  f"{r['steps_from_last_cue_frame_to_decision']}; episode length {r['length']}")
    else:
        rows = image_runs(args.segments, args.inits, args.seeds, args.context_length, args.epochs,
                          not args.no_dt, args.full_dt)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    run_main(main)
