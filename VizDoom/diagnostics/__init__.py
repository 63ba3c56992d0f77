"""ViZDoom-Two-Colors diagnosis scripts: per-colour expert measurements and the colour probe of the memory."""
