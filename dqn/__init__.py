"""atari-dqn: Hydra-configured DQN experiments on Atari with PyTorch."""

__version__ = "0.1.0"
