"""Image augmentation for the learner: DrQ's random shifts (Kostrikov et al. 2021).

Each stack of frames is moved by a whole number of pixels, the same shift for all its frames,
with the edge pixels repeated into the space it leaves (DrQ pads by 4 with replicated edges and
crops back to 84x84: the same thing). Done by indexing, so uint8 frames stay uint8.
"""

from __future__ import annotations

import torch


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """`frames` (batch, stack, height, width) with stack i moved by `shifts[i] = (dy, dx)`
    pixels: output pixel (y, x) is input pixel (y + dy, x + dx), clamped to the image."""
    batch, stack, height, width = frames.shape
    rows = (torch.arange(height, device=frames.device) + shifts[:, :1]).clamp(0, height - 1)
    cols = (torch.arange(width, device=frames.device) + shifts[:, 1:]).clamp(0, width - 1)
    b = torch.arange(batch, device=frames.device)[:, None, None, None]
    s = torch.arange(stack, device=frames.device)[None, :, None, None]
    return frames[b, s, rows[:, None, :, None], cols[:, None, None, :]]


def random_shift(frames: torch.Tensor, pad: int) -> torch.Tensor:
    """`frames` with each stack shifted by a uniform random (dy, dx) in [-pad, pad]^2 (torch's
    global generator, so seeded runs repeat)."""
    shifts = torch.randint(-pad, pad + 1, (len(frames), 2), device=frames.device)
    return shift_frames(frames, shifts)
