"""The project's commands, each run as ``python -m RATE_model.tools.<name>``: report, plots, attention, evaluate,
step_loss, measure, pretrain_encoder. They reach an environment only through ``RATE_model.envs``."""
