"""Memory Maze diagnosis scripts: oracle measurements, per-step losses, closed-loop behaviour, encoder pretraining."""
