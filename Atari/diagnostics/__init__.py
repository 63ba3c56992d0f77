"""Atari diagnosis scripts: probes of the scripted RAM experts."""
