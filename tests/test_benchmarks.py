"""Benchmark scripts: the precision they report, both GEMM rates, the profile, and the report tables."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_train, compare_losses, report


def test_bench_train_reports_precision_gemm_rates_and_profile(capsys):
    auto = bench_train.main(["--preset", "tmaze-demo", "--iters", "1", "--warmup", "0", "--profile", "3", "--json"])
    assert auto["precision_requested"] == "auto" and auto["precision"] == "fp32"  # the suite runs auto as fp32
    assert auto["gemm_fp32_flops_per_sec"] > 0 and auto["gemm_bf16_flops_per_sec"] > 0
    assert auto["gemm_flops_per_sec"] == auto["gemm_fp32_flops_per_sec"]
    ops = auto["profile"]
    assert len(ops) == 3 and all(0 < e["share"] <= 1 and e["calls"] >= 1 for e in ops)
    assert ops[0]["ms"] >= ops[-1]["ms"]
    bf16 = bench_train.main(["--preset", "tmaze-demo", "--iters", "1", "--warmup", "0", "--bf16", "--json"])
    assert bf16["precision"] == "bf16" and bf16["gemm_flops_per_sec"] == bf16["gemm_bf16_flops_per_sec"]
    fp32 = {**auto, "precision_requested": "fp32", "sec_per_iter": 2 * auto["sec_per_iter"], "profile": None}
    table = report.precision_table([auto, fp32, bf16])
    row = [ln for ln in table.splitlines() if ln.startswith("| tmaze-demo")]
    assert len(row) == 1 and "| fp32 |" in row[0] and "| 2.00 |" in row[0]
    assert "tmaze-demo (fp32" in report.profile_tables([auto])
    capsys.readouterr()


def test_compare_losses_averages_the_last_common_steps(tmp_path):
    import json

    for name, scale in (("a", 1.0), ("b", 1.01)):
        run = tmp_path / name
        run.mkdir()
        rows = [{"step": s, "losses/train_loss": scale * (2.0 if s <= 100 else 1.0)} for s in range(1, 301)]
        rows.insert(5, {"step": 5, "eval/return": 3.0})  # rows without a loss are skipped
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    res = compare_losses.main([str(tmp_path / "a"), str(tmp_path / "b"), "--last", "100"])
    assert res["common_steps"] == 300 and res["window"] == 100
    assert res["mean_a"] == 1.0 and abs(res["relative_difference"] - 0.01) < 1e-9
    assert abs(res["max_step_difference"] - 0.02) < 1e-9


def test_bench_train_with_a_frozen_encoder_skips_the_encoders_work(capsys):
    full, frozen = (bench_train.main(["--preset", "vizdoom-cpu-dt", "--iters", "1", "--warmup", "0", "--json", *extra])
                    for extra in ([], ["--frozen_encoder"]))
    assert frozen["frozen_encoder"] and not full["frozen_encoder"]
    assert frozen["params"] == full["params"]  # the same model; only the encoder's forward and backward are gone
    assert frozen["flops_per_iter"] < full["flops_per_iter"] / 4  # the encoder: ~80 % of an iteration
    capsys.readouterr()


def test_bench_minari_measures_both_phases(capsys):
    from benchmarks import bench_minari

    res = bench_minari.main(["--episodes", "3", "--steps", "4"])
    assert res["read_steps"] == 12 and res["write_dataset_mb"] > res["pixels_mb"] > 0
    assert res["read_peak_rss_mb"] >= res["read_rss_before_mb"] > 0 and res["write_seconds"] > 0
    capsys.readouterr()


def test_bench_env_steps_and_evaluates_an_env_and_rejects_other_envs_flags(capsys):
    pytest.importorskip("mujoco")
    from benchmarks import bench_env

    res = bench_env.main(["--env", "mujoco", "env", "--steps", "30", "--json"])
    assert res["steps"] == 30 and res["env"] == "halfcheetah" and res["steps_per_s_per_process"] > 0
    res = bench_env.main(["--env", "mujoco", "eval", "--episodes", "2", "--T", "5", "--json"])
    assert res["env_steps"] == 10 and res["ms_per_batched_step"] > 0 and "return" in res
    for argv, error in ((["--env", "mujoco", "env", "--game", "Pong"], "unrecognized arguments: --game"),
                        (["--env", "vizdoom", "sample"], "invalid choice: 'sample'"),
                        (["--env", "mujoco", "sample"], "sample needs --store"),
                        (["env"], "required: --env")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            bench_env.main(argv)
        assert error in capsys.readouterr().err


def test_bench_attention_times_both_kernels_on_the_same_layer(capsys):
    from benchmarks import bench_attention

    res = bench_attention.main(["--preset", "tmaze-demo", "--precision", "fp32", "--reps", "1", "--json"])
    assert res["precision"] == "fp32" and res["form"] == "standard"  # d_head 16 < d 64
    assert res["tokens"] == 3 * 10 + 2 * 5  # K = 10 steps of 3 tokens, 5 read and 5 write memory slots
    for kernel in ("explicit", "fused"):
        assert 0 < res[f"{kernel}_forward_ms"] < res[f"{kernel}_forward_backward_ms"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == res


def test_bench_eval_plays_a_checkpoint_and_reports_memory(tmp_path, capsys):
    """--checkpoint: a trained T-Maze model instead of a preset; the peak RSS before and after the rollouts."""
    from dataclasses import asdict

    from benchmarks import bench_eval, presets
    from RATE_model.checkpoint import save
    from RATE_model.model import RATE

    cfg = presets.PRESETS["tmaze-demo"].model
    save(tmp_path / "last.pt", {"model": RATE(cfg).state_dict(), "model_config": asdict(cfg), "config": {}})
    res = bench_eval.main(["--checkpoint", str(tmp_path / "last.pt"), "--T", "40", "--episodes", "3",
                           "--precision", "fp32", "--json"])
    assert res["preset"] == str(tmp_path / "last.pt") and res["runs"][0]["T"] == 40
    assert res["runs"][0]["steps"] <= 40 and 0 <= res["runs"][0]["success"] <= 1
    assert res["peak_rss_gb"] >= res["peak_rss_gb_before"] > 0
    capsys.readouterr()
