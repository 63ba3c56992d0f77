"""Benchmark presets: the paper configurations whose cost we measure."""

from __future__ import annotations

from dataclasses import dataclass, field

from RATE_model.config import ModelConfig


@dataclass
class Preset:
    model: ModelConfig
    batch_size: int
    obs_shape: tuple[int, ...]
    n_actions: int
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def continuous(self) -> bool:
        return self.model.env == "mujoco"


TMAZE = dict(env="tmaze", context_length=30, sections=3, n_layer=8, n_head=10, d_model=64, d_head=64, d_inner=64,
             skip_dec_ffn=True, num_mem_tokens=5, mem_len=0, n_head_ca=4, mrv_act="relu", dropout=0.05, dropatt=0.0)
VIZDOOM = dict(env="vizdoom", context_length=30, sections=3, n_layer=6, n_head=8, d_model=128, d_head=128,
               d_inner=128, skip_dec_ffn=True, num_mem_tokens=5, mem_len=300, n_head_ca=2, mrv_act="relu",
               dropout=0.05, dropatt=0.0)
VIZDOOM_CPU = {**VIZDOOM, "n_layer": 3, "n_head": 4, "d_model": 64, "d_head": 32, "d_inner": 64}
MEMMAZE = dict(env="memory_maze", context_length=30, sections=3, n_layer=6, n_head=8, d_model=64, d_head=64,
               d_inner=64, num_mem_tokens=5, mem_len=300, n_head_ca=2, mrv_act="relu", dropout=0.5, dropatt=0.2)
MEMMAZE_CPU = {**MEMMAZE, "n_layer": 3, "n_head": 4, "d_head": 32}
ATARI = dict(env="atari", context_length=30, sections=3, n_layer=6, n_head=8, d_model=128, d_head=16, d_inner=128,
             skip_dec_ffn=True, num_mem_tokens=15, mem_len=360, n_head_ca=1, mrv_act="relu", dropout=0.1,
             dropatt=0.0, env_kwargs={"n_actions": 4})
ATARI_CPU = {**ATARI, "context_length": 10, "n_layer": 3, "n_head": 4, "d_model": 64, "d_inner": 64}
MUJOCO = dict(env="mujoco", context_length=20, sections=3, n_layer=3, n_head=1, d_model=128, d_head=128,
              d_inner=128, skip_dec_ffn=True, num_mem_tokens=5, mem_len=210, n_head_ca=1, mrv_act="relu", dropout=0.1,
              dropatt=0.0, env_kwargs={"state_dim": 11, "act_dim": 3})
NO_MEMORY = {"num_mem_tokens": 0, "mem_len": 0, "n_head_ca": 0, "mrv_act": "no_act"}


def _family(env: str, title: str, paper: dict, cpu: dict, batch: tuple[int, int], obs: tuple[int, ...],
            n_actions: int, paper_notes: str, cpu_notes: str) -> dict[str, Preset]:
    """``<env>-paper`` (the paper's RATE, batch[0]), ``<env>-cpu`` (RATE at our CPU configuration, batch[1])
    and ``<env>-cpu-dt`` (DT at that configuration)."""
    dt_notes = f"DT at the {title} CPU configuration ({cpu['context_length'] * cpu['sections']}-step context)"
    return {f"{env}-paper": Preset(ModelConfig(model_mode="RATE", **paper), batch[0], obs, n_actions, paper_notes),
            f"{env}-cpu": Preset(ModelConfig(model_mode="RATE", **cpu), batch[1], obs, n_actions, cpu_notes),
            f"{env}-cpu-dt": Preset(ModelConfig(model_mode="DT", **{**cpu, **NO_MEMORY}), batch[1], obs, n_actions,
                                    dt_notes)}


PRESETS: dict[str, Preset] = {
    "tmaze-paper": Preset(ModelConfig(model_mode="RATE", **TMAZE), 64, (4,), 4,
                          "T-Maze reference: B 64, K 30, N 3, 8 layers, 10 heads, d 64"),
    "tmaze-paper-dt": Preset(ModelConfig(model_mode="DT", **{**TMAZE, **NO_MEMORY}), 64, (4,), 4,
                             "DT on the same 90 steps as one context"),
    **_family("vizdoom", "ViZDoom", VIZDOOM, VIZDOOM_CPU, (64, 32), (3, 64, 112), 5,
              "ViZDoom-Two-Colors reference: K 30, N 3, 6 layers, 8 heads, d 128, mem_len 300",
              "ViZDoom at our CPU configuration (VizDoom/RESULTS_vizdoom.md): B 32, 3 layers, d 64"),
    **_family("memmaze", "Memory Maze", MEMMAZE, MEMMAZE_CPU, (64, 32), (3, 64, 64), 6,
              "Memory Maze reference: K 30, N 3, 6 layers, 8 heads, d 64, mem_len 300",
              "Memory Maze at our CPU configuration (MemoryMaze/RESULTS_memory_maze.md): B 32, 3 layers"),
    **_family("atari", "Atari", ATARI, ATARI_CPU, (128, 32), (4, 84, 84), 4,
              "Atari reference (Breakout's 4 actions): K 30, N 3, 6 layers, 8 heads, d 128, m 15",
              "Atari at our CPU configuration (Atari/RESULTS_atari.md): B 32, K 10, 3 layers, d 64"),
    **_family("mujoco", "MuJoCo", MUJOCO, MUJOCO, (4096, 256), (11,), 3,
              "MuJoCo reference (Hopper's sizes): B 4096, K 20, N 3, 3 layers, 1 head, d 128, m 5",
              "MuJoCo at our CPU configuration (MuJoCo/RESULTS_mujoco.md): the reference network, B 256"),
    "tmaze-demo": Preset(ModelConfig(model_mode="RATE", **{**TMAZE, "context_length": 10, "n_layer": 3, "n_head": 4,
                                                           "d_head": 16}), 64, (4,), 4, "make demo's RATE"),
}
