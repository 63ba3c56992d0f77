"""ViZDoom-Two-Colors diagnosis scripts: expert measurements, per-step loss, colour probes, the single-frame test."""
