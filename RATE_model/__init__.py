"""RATE: Recurrent Action Transformer with Memory — the shared library of every environment folder."""

from RATE_model.config import ConfigError, ModelConfig, TrainConfig
from RATE_model.model import RATE, State

__all__ = ["RATE", "ConfigError", "ModelConfig", "State", "TrainConfig"]
