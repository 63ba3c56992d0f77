"""The newest RATE paper's POPGym table (Table 9; 3 runs × 100 seeds; ../shared/PAPER_RESULTS.md): the mean
return of each model on each of the 48 tasks, and of its PPO-GRU dataset ("data"). Data beside ``run_grid.py``, whose
tables print it next to ours (``diagnostics/measure_experts.py`` reads it too)."""

from __future__ import annotations

COLUMNS = ("RATE", "DT", "Random", "BC_MLP", "BC_LSTM", "data")
PAPER: dict[str, tuple[float, ...]] = {  # task (without popgym- and -v0): COLUMNS
    "AutoencodeEasy": (-0.29, -0.47, -0.50, -0.47, -0.32, -0.26),
    "AutoencodeMedium": (-0.47, -0.49, -0.50, -0.49, -0.47, -0.48),
    "AutoencodeHard": (-0.46, -0.49, -0.50, -0.50, -0.44, -0.43),
    "BattleshipEasy": (-0.81, -0.93, -0.46, -1.00, -0.49, -0.35),
    "BattleshipMedium": (-0.91, -0.91, -0.39, -1.00, -0.81, -0.43),
    "BattleshipHard": (-0.92, -0.97, -0.41, -1.00, -0.67, -0.40),
    "ConcentrationEasy": (-0.06, -0.05, -0.19, -0.92, -0.14, -0.12),
    "ConcentrationMedium": (-0.84, -0.84, -0.84, -0.88, -0.84, -0.87),
    "ConcentrationHard": (-0.25, -0.25, -0.19, -0.92, -0.19, -0.44),
    "CountRecallEasy": (0.07, -0.46, -0.93, -0.92, 0.05, 0.22),
    "CountRecallMedium": (-0.47, -0.75, -0.88, -0.88, -0.47, -0.48),
    "CountRecallHard": (-0.54, -0.81, -0.93, -0.92, -0.56, -0.55),
    "HigherLowerEasy": (0.50, 0.50, 0.00, 0.47, 0.50, 0.51),
    "HigherLowerMedium": (0.50, 0.50, -0.01, 0.49, 0.50, 0.49),
    "HigherLowerHard": (0.52, 0.51, 0.01, 0.50, 0.51, 0.49),
    "LabyrinthEscapeEasy": (0.95, 0.80, -0.39, 0.72, 0.92, 0.95),
    "LabyrinthEscapeMedium": (-0.81, -0.82, -0.94, -0.89, -0.86, -0.94),
    "LabyrinthEscapeHard": (-0.56, -0.67, -0.84, -0.71, -0.69, -0.49),
    "LabyrinthExploreEasy": (0.95, 0.88, -0.34, 0.87, 0.93, 0.96),
    "LabyrinthExploreMedium": (0.79, 0.77, -0.73, 0.26, 0.71, 0.79),
    "LabyrinthExploreHard": (0.88, 0.86, -0.61, 0.45, 0.82, 0.87),
    "MineSweeperEasy": (0.15, -0.33, -0.26, -0.47, 0.20, 0.28),
    "MineSweeperMedium": (-0.44, -0.40, -0.43, -0.49, -0.35, -0.27),
    "MineSweeperHard": (-0.20, -0.37, -0.39, -0.48, -0.16, -0.10),
    "MultiarmedBanditEasy": (0.37, 0.27, 0.02, 0.05, 0.17, 0.62),
    "MultiarmedBanditMedium": (0.22, 0.27, 0.01, 0.01, 0.17, 0.43),
    "MultiarmedBanditHard": (0.32, 0.35, 0.01, 0.21, 0.14, 0.59),
    "NoisyPositionOnlyCartPoleEasy": (0.88, 0.87, 0.11, 0.23, 0.44, 0.98),
    "NoisyPositionOnlyCartPoleMedium": (0.18, 0.17, 0.11, 0.16, 0.22, 0.36),
    "NoisyPositionOnlyCartPoleHard": (0.33, 0.34, 0.12, 0.18, 0.25, 0.57),
    "NoisyPositionOnlyPendulumEasy": (0.87, 0.84, 0.27, 0.31, 0.88, 0.90),
    "NoisyPositionOnlyPendulumMedium": (0.60, 0.56, 0.26, 0.28, 0.66, 0.67),
    "NoisyPositionOnlyPendulumHard": (0.68, 0.63, 0.27, 0.30, 0.72, 0.73),
    "PositionOnlyCartPoleEasy": (0.93, 1.00, 0.12, 0.15, 0.17, 1.00),
    "PositionOnlyCartPoleMedium": (0.05, 0.03, 0.04, 0.05, 0.06, 1.00),
    "PositionOnlyCartPoleHard": (0.07, 0.34, 0.05, 0.09, 0.12, 1.00),
    "PositionOnlyPendulumEasy": (0.54, 0.51, 0.27, 0.29, 0.91, 0.92),
    "PositionOnlyPendulumMedium": (0.47, 0.49, 0.26, 0.28, 0.82, 0.82),
    "PositionOnlyPendulumHard": (0.49, 0.55, 0.26, 0.30, 0.89, 0.88),
    "RepeatFirstEasy": (1.00, 0.45, -0.49, -0.50, 1.00, 1.00),
    "RepeatFirstMedium": (0.10, 0.42, -0.50, -0.50, -0.50, 0.99),
    "RepeatFirstHard": (0.99, -0.21, -0.50, -0.50, 0.99, 1.00),
    "RepeatPreviousEasy": (1.00, 1.00, -0.49, -0.52, 1.00, 1.00),
    "RepeatPreviousMedium": (-0.46, -0.47, -0.51, -0.48, -0.45, -0.48),
    "RepeatPreviousHard": (-0.38, -0.38, -0.50, -0.50, -0.38, -0.39),
    "VelocityOnlyCartPoleEasy": (1.00, 1.00, 0.11, 0.99, 1.00, 1.00),
    "VelocityOnlyCartPoleMedium": (1.00, 0.96, 0.04, 0.63, 1.00, 0.99),
    "VelocityOnlyCartPoleHard": (1.00, 1.00, 0.06, 0.83, 1.00, 1.00),
}


def paper_value(task: str, column: str) -> float | None:
    """The paper's number for ``task`` (a task id) in ``column`` (one of COLUMNS), None where it has none."""
    name = task.removeprefix("popgym-").removesuffix("-v0").replace("Cartpole", "CartPole")
    row = PAPER.get(name)
    return None if row is None or column not in COLUMNS else row[COLUMNS.index(column)]
