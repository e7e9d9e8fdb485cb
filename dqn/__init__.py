"""atari-dqn: Hydra-configured DQN experiments on Atari with PyTorch."""

from pathlib import Path

__version__ = "0.1.0"

# Trained agents shipped with the package (policy files, their configs and evaluations).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
