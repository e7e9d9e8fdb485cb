"""DrQ's random shifts and intensity changes, against hand-computed images."""

import pytest
import torch

from dqn.augmentation import random_intensity, random_shift, scale_intensity, shift_frames


def test_shift_moves_every_frame_of_a_stack_and_repeats_the_edges():
    image = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4)  # rows 0-3, 4-7, ...
    frames = torch.cat([image, image + 100], dim=1)  # a stack of two frames
    down_right = shift_frames(frames, torch.tensor([[1, 2]]))  # pixel (y, x) <- (y+1, x+2)
    expected = torch.tensor(
        [[6, 7, 7, 7], [10, 11, 11, 11], [14, 15, 15, 15], [14, 15, 15, 15]], dtype=torch.uint8
    )
    assert torch.equal(down_right[0, 0], expected)
    assert torch.equal(down_right[0, 1], expected + 100)  # the same shift for the whole stack
    up_left = shift_frames(image, torch.tensor([[-1, -1]]))
    assert up_left[0, 0].tolist() == [[0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]]
    assert torch.equal(shift_frames(image, torch.tensor([[0, 0]])), image)
    assert down_right.dtype == torch.uint8


def test_random_shift_draws_a_shift_per_stack_within_the_pad():
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (256, 4, 84, 84), dtype=torch.uint8)
    shifted = random_shift(frames, pad=4)
    assert shifted.shape == frames.shape and shifted.dtype == torch.uint8
    # Recover each stack's shift by trying them all: exactly one of the 81 fits, and all fit
    # somewhere in [-4, 4]^2.
    found: set[tuple[int, int, int]] = set()
    for dy in range(-4, 5):
        for dx in range(-4, 5):
            moved = shift_frames(frames, torch.tensor([[dy, dx]] * len(frames)))
            matches = (moved == shifted).flatten(1).all(dim=1)
            found.update((i, dy, dx) for i in torch.nonzero(matches).flatten().tolist())
    assert sorted(i for i, _, _ in found) == list(range(256))
    assert len({(dy, dx) for _, dy, dx in found}) > 40  # the shifts vary


def test_row_and_column_selects_equal_one_fancy_index_over_every_shift():
    """The two `index_select`s pick exactly the pixels that indexing with four broadcast arrays
    picks (the reference `scripts/benchmark.py` times them against)."""
    from conftest import load_script

    torch.manual_seed(1)
    frames = torch.randint(0, 256, (81, 4, 84, 84), dtype=torch.uint8)
    shifts = torch.tensor([[dy, dx] for dy in range(-4, 5) for dx in range(-4, 5)])
    reference = load_script("benchmark").fancy_index_shift(frames, shifts)
    assert torch.equal(shift_frames(frames, shifts), reference)


def test_intensity_scales_each_stack_by_its_own_factor_in_unit_range():
    frames = torch.tensor([[[[0, 255], [51, 102]]], [[[255, 255], [0, 0]]]], dtype=torch.uint8)
    out = scale_intensity(frames, torch.tensor([1.0, 0.9]))
    assert out.dtype == torch.float32
    assert out[0].flatten().tolist() == pytest.approx([0.0, 1.0, 0.2, 0.4])
    assert out[1].flatten().tolist() == pytest.approx([0.9, 0.9, 0.0, 0.0])


def test_intensity_in_bfloat16_is_the_float32_result_to_bfloat16_precision():
    """Pixels are exact in bfloat16; the factor / 255 and the product are rounded to 8
    significant bits: 1 / 255 becomes 0.0039368, so 255 -> 1.0, 51 -> 0.20117, 102 -> 0.40234
    (within 0.6% of float32's 0.2 and 0.4)."""
    frames = torch.tensor([[[[0, 255], [51, 102]]], [[[255, 255], [0, 0]]]], dtype=torch.uint8)
    factors = torch.tensor([1.0, 0.9])
    out = scale_intensity(frames, factors, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert out[0].flatten().tolist() == [0.0, 1.0, 0.201171875, 0.40234375]
    exact = scale_intensity(frames, factors)
    assert torch.allclose(out.float(), exact, rtol=2**-7, atol=0)


def test_random_intensity_factors_stay_within_two_standard_deviations():
    torch.manual_seed(0)
    frames = torch.full((4096, 1, 2, 2), 255, dtype=torch.uint8)
    factors = random_intensity(frames, scale=0.05)[:, 0, 0, 0]
    assert float(factors.min()) >= 0.9 - 1e-6 and float(factors.max()) <= 1.1 + 1e-6
    assert abs(float(factors.mean()) - 1.0) < 0.005 and 0.04 < float(factors.std()) < 0.05
