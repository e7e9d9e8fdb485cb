"""scripts/plot.py on real TensorBoard logs; the TensorBoard GIF read back."""

import subprocess
import sys
import time

import imageio.v2 as imageio
import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, load_script
from dqn.logger import RunLogger

PLOT = REPO / "scripts" / "plot.py"
plot = load_script("plot")


def fake_run(run_dir, overrides, returns, steps):
    """A run directory as Hydra and the trainer leave it: overrides, config, event file."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump({"env": {"kind": "atari", "frame_skip": 4}})
    )
    logger = RunLogger(run_dir, total_steps=steps[-1])
    for step, value in zip(steps, returns, strict=True):
        logger.scalars(step, {"eval/episodic_return": value})
    logger.close()


def test_sweep_seeds_are_grouped_into_mean_and_band(tmp_path):
    sweep = tmp_path / "multirun"
    steps = [0, 1000, 2000]
    fake_run(sweep / "0_agent.lr=1e-4,seed=1", ["agent.lr=1e-4", "seed=1"], [0, 10, 20], steps)
    fake_run(sweep / "1_agent.lr=1e-4,seed=2", ["agent.lr=1e-4", "seed=2"], [0, 30, 40], steps)
    fake_run(sweep / "2_agent.lr=2e-4,seed=1", ["agent.lr=2e-4", "seed=1"], [5, 5, 5], steps)
    curves = [plot.read_curve(r, "eval/episodic_return") for r in plot.find_runs([sweep])]
    assert sorted({c.label for c in curves}) == ["agent.lr=1e-4", "agent.lr=2e-4"]
    seeds = [c for c in curves if c.label == "agent.lr=1e-4"]
    assert seeds[0].frames.tolist() == [0, 4000, 8000]  # env steps x frame_skip
    grid, mean, low, high = plot.group_band(seeds, "frames")
    assert grid.tolist() == [0, 4000, 8000]
    assert mean.tolist() == [0, 20, 30] and low.tolist() == [0, 10, 20]
    assert high.tolist() == [0, 30, 40]

    out = tmp_path / "curves.png"
    result = subprocess.run(
        [sys.executable, str(PLOT), str(sweep), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 runs in 2 groups" in result.stderr
    image = imageio.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 600


def test_labels_name_each_path_in_the_legend_as_given(tmp_path, monkeypatch):
    """Two records whose overrides no longer say how they differ: the legend takes the names
    given, one per path, and a sweep's seeds stay one group under its name."""
    steps = [0, 1000]
    fake_run(tmp_path / "a" / "0", ["experiment=pong", "seed=1"], [0, 10], steps)
    fake_run(tmp_path / "a" / "1", ["experiment=pong", "seed=2"], [0, 20], steps)
    fake_run(tmp_path / "b", ["experiment=pong", "x=1", "seed=1"], [5, 5], steps)
    legends = []
    monkeypatch.setattr(
        plot.plt, "close", lambda fig: legends.append([t.get_text() for t in fig.legends[0].texts])
    )
    names = ["uniform replay", "prioritized replay"]
    out = tmp_path / "curves.png"
    argv = [str(tmp_path / "a"), str(tmp_path / "b"), "--labels", *names, "--out", str(out)]
    assert plot.main(argv) == 0
    assert sorted(legends[0]) == ["prioritized replay (1 seed)", "uniform replay (2 seeds)"]
    assert plot.main([str(tmp_path / "a"), "--labels", *names]) == 2


def test_hours_leave_out_the_pause_between_a_stop_and_a_resume(tmp_path, monkeypatch):
    """Two processes of one run, an hour each, a day apart: the curve spans two training hours."""
    clock = [0.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    run_dir = tmp_path / "run"
    for first_step, started in ((0, 1e9), (2000, 1e9 + 3600 + 86400)):
        clock[0] = started
        logger = RunLogger(run_dir, total_steps=4000, initial_step=first_step)
        for step in (first_step + 1000, first_step + 2000):
            clock[0] += 1800
            logger.scalars(step, {"eval/episodic_return": step / 100})
        logger.close()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2
    curve = plot.read_curve(run_dir, "eval/episodic_return")
    assert curve.steps.tolist() == [1000, 2000, 3000, 4000]
    assert curve.hours.tolist() == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_thresholds_print_where_each_run_first_reached_them(tmp_path):
    """Pong-style question: at which step did the eval return first pass 0 and +15?"""
    steps = [0, 50_000, 100_000, 150_000, 200_000]
    fake_run(tmp_path / "pong", ["env=pong"], [-21, -3, 0.5, -1, 16], steps)
    curve = plot.read_curve(tmp_path / "pong", "eval/episodic_return")
    assert plot.first_crossing(curve, 0) == 2 and plot.first_crossing(curve, 15) == 4
    assert plot.first_crossing(curve, 20) is None
    # Averaged over 2 points, as `--smooth 2` draws it: -21, -12, -1.25, -0.25, 7.5.
    assert plot.first_crossing(curve, 0, smooth=2) == 4
    assert plot.first_crossing(curve, 15, smooth=2) is None
    result = subprocess.run(
        [
            sys.executable,
            str(PLOT),
            str(tmp_path),
            "--thresholds",
            "0",
            "15",
            "20",
            "--out",
            str(tmp_path / "pong.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert rows[0][1:4] == ["0", "100000", "400000"]  # threshold, env steps, frames
    assert rows[1][1:4] == ["15", "200000", "800000"]
    assert " ".join(rows[2][1:]).startswith("20 not reached (last point: 16 at 200000 steps)")


def test_a_directory_without_the_tag_is_one_sentence(tmp_path):
    fake_run(tmp_path / "run", ["seed=1"], [1.0], [0])
    result = subprocess.run(
        [sys.executable, str(PLOT), str(tmp_path), "--tag", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: no run under")


def test_tensorboard_gif_is_read_back(tmp_path):
    frames = [np.full((84, 84), i * 20, dtype=np.uint8) for i in range(10)]
    logger = RunLogger(tmp_path, total_steps=1)
    logger.video("eval/video", frames, step=500, fps=15)
    logger.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    [image] = events.Images("eval/video")
    assert image.step == 500 and (image.width, image.height) == (84, 84)
    decoded = imageio.mimread(image.encoded_image_string, format="GIF")
    assert len(decoded) == 10
    assert int(np.asarray(decoded[3]).mean()) == pytest.approx(60, abs=2)
