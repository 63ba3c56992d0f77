"""Atari diagnosis scripts: scripted-expert measurements and probes, encoder pretraining."""
