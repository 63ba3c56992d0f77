"""Measure the scripted experts and a uniformly random policy per pillar colour: the shared tool's line
(``python -m RATE_model.tools.measure --env vizdoom``: mean return ± standard error, length, steps per second
on the protocol's seeds) with what only ViZDoom has: the return per colour (± standard error), the share of
picked-up items that had the pillar's colour (overall, per colour and per time bin) and the share of steps
whose expert action depends on the colour.

    python3 VizDoom/diagnostics/measure_expert.py --episodes 100 --eval_max_steps 2100
    python3 VizDoom/diagnostics/measure_expert.py --policies privileged --epsilon 0.1
    python3 VizDoom/diagnostics/measure_expert.py --policies visible --json     # one JSON line
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from RATE_model.cli import run_main, write_json_lines
from RATE_model.rollout import sem
from RATE_model.tools import measure as shared
from VizDoom.VizDoom_src.vizdoom_env import PICKUP_KEYS
from VizDoom.VizDoom_src.vizdoom_eval import ENV, right_shares

SHARED = ("env", "policy", "split", "episodes", "return", "return_sem", "length", "steps_per_s", "flags")


def per_colour(line: dict[str, Any], rows: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """The shared ``line`` of a policy's episodes ``rows`` with the per-colour statistics added."""
    red = np.array([r["red"] for r in rows], bool)
    ret, length = (np.array([r[k] for r in rows], float) for k in ("return", "length"))
    colour = np.array([r["colour_dependent"] for r in rows], float)
    pickups = {k: np.array([r[k] for r in rows]) for k in PICKUP_KEYS}
    res: dict[str, Any] = {k: line[k] for k in SHARED}
    res.update(epsilon=args.epsilon, timeout=args.eval_max_steps)
    if line["policy"] == "visible" and args.target_noise:
        res.update(target_noise=args.target_noise, target_hold=args.target_hold)
    for name, m in (("", np.ones_like(red)), ("_red", red), ("_green", ~red)):
        res[f"return{name}"] = round(float(ret[m].mean()), 2) if m.any() else float("nan")
        res[f"return{name}_sem"] = round(sem(ret[m]), 2)
    good, bad = pickups["good"].sum(), pickups["bad"].sum()
    res["right_share"] = round(float(good / max(good + bad, 1)), 3)
    res.update({k.replace("right_pickups", "right_share"): None if np.isnan(v) else round(v, 3)  # JSON null
                for k, v in right_shares(pickups, red).items()})
    res["colour_dependent_steps"] = round(float(colour.sum() / length.sum()), 3)
    return res


def row(m: dict[str, Any]) -> str:
    """One readable line of a measurement."""
    name = m["policy"] + (f" ε={m['epsilon']:g}" if m["policy"] == "privileged" else "") \
        + (f" J={m['target_noise']:g}/{m['target_hold']}" if m.get("target_noise") else "")
    return (f"{name:<18} return {m['return']:6.2f} ± {m['return_sem']:.2f}  red {m['return_red']:6.2f}  "
            f"green {m['return_green']:6.2f}  right share {m['right_share']:.3f}  length {m['length']:7.1f}  "
            f"colour-dependent steps {m['colour_dependent_steps']:.3f}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = shared.parser(ENV, prog="VizDoom/diagnostics/measure_expert.py", description=__doc__.splitlines()[0],
                      env_flag=False)
    p.add_argument("--json", action="store_true", help="print one JSON line per policy instead of a table")
    args = shared.finish_args(ENV, p.parse_args(argv))
    out = []
    for policy in args.policies:
        out.append(per_colour(*shared.measure(ENV, policy, args), args))
        print(json.dumps(out[-1]) if args.json else row(out[-1]), flush=True)
    if args.out:
        write_json_lines(args.out, out)
    return out


if __name__ == "__main__":
    run_main(main)
