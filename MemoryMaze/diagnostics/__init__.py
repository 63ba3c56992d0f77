"""Memory Maze diagnosis scripts beyond the tools: the oracles' halves and closed-loop behaviour."""
