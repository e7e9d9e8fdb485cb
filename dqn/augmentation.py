"""Image augmentation for the learner, as DrQ does it (Kostrikov et al. 2021): random shifts and
random intensity.

A shift moves each stack of frames by a whole number of pixels, the same shift for all its
frames, with the edge pixels repeated into the space it leaves (DrQ pads by 4 with replicated
edges and crops back to 84x84: the same thing). It copies whole rows, then whole columns of the
transposed images, each with one `index_select`, so uint8 frames stay uint8 and no padded copy
is made (a sixth of the time of one four-array fancy index: `scripts/benchmark.py`). The
intensity change multiplies each stack by one random factor near 1, in the dtype the network
computes in (bfloat16 under `hw.precision=bf16`, which spares a float32 copy of the batch).
"""

from __future__ import annotations

import torch


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """`frames` (batch, stack, height, width) with stack i moved by `shifts[i] = (dy, dx)`
    pixels: output pixel (y, x) is input pixel (y + dy, x + dx), clamped to the image."""
    batch, stack, height, width = frames.shape
    device = frames.device
    rows = (torch.arange(height, device=device) + shifts[:, :1]).clamp(0, height - 1)
    cols = (torch.arange(width, device=device) + shifts[:, 1:]).clamp(0, width - 1)
    images = torch.arange(batch * stack, device=device).view(batch, stack, 1)
    # Output row y of image (i, s) is its input row rows[i, y]: whole rows picked by one
    # index_select over the batch's rows. Columns likewise, on the transposed images.
    by_rows = frames.reshape(-1, width).index_select(0, (images * height + rows[:, None]).flatten())
    transposed = by_rows.view(batch, stack, height, width).transpose(2, 3).reshape(-1, height)
    by_cols = transposed.index_select(0, (images * width + cols[:, None]).flatten())
    return by_cols.view(batch, stack, width, height).transpose(2, 3).contiguous()


def random_shift(frames: torch.Tensor, pad: int) -> torch.Tensor:
    """`frames` with each stack shifted by a uniform random (dy, dx) in [-pad, pad]^2 (torch's
    global generator, so seeded runs repeat)."""
    shifts = torch.randint(-pad, pad + 1, (len(frames), 2), device=frames.device)
    return shift_frames(frames, shifts)


def scale_intensity(
    frames: torch.Tensor, factors: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 `frames` (batch, ...) as `dtype` floats in [0, 1], each stack i multiplied by
    `factors[i]` (the networks take float input as already scaled). Pixels 0-255 are exact in
    bfloat16, so asking for the dtype the network computes in skips a float32 copy of the
    batch (and its cast under autocast); the factor / 255 and the product are then rounded to
    8 significant bits (under 0.8% each pixel, against the factor's own 5% spread)."""
    view = (-1,) + (1,) * (frames.dim() - 1)
    return frames.to(dtype) * (factors.view(view) / 255.0).to(dtype)


def random_intensity(
    frames: torch.Tensor, scale: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """DrQ's intensity augmentation: each stack times `1 + scale * clip(n, -2, 2)` with n
    standard normal (torch's global generator), as `dtype` floats in [0, 1]."""
    noise = torch.randn(len(frames), device=frames.device).clamp(-2.0, 2.0)
    return scale_intensity(frames, 1.0 + scale * noise, dtype)
