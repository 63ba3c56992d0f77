"""Minigrid-Memory diagnosis scripts: the expert's cue use, the image-cue T-Maze, the collection speed."""
