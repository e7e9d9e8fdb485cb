"""Throughput and memory, ours against one gymnasium env and Stable-Baselines3, in one run.

    python scripts/benchmark.py [--quick] [--json PATH]

Every figure is the median of several timed windows, and the windows of the things compared
are interleaved, so that a noisy machine shifts them alike. Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dqn.agent import DQNAgent
from dqn.collector import Collector
from dqn.config import EnvBackend, EnvConfig, Precision, compose_config, load_run_config
from dqn.envs import make_vector_env
from dqn.hardware import flush_denormals, keep_freed_memory, resolve_precision
from dqn.logger import RunLogger
from dqn.networks import NatureCNN
from dqn.replay import FrameReplayBuffer
from dqn.trainer import Trainer

GAME = "space_invaders"
SB3_BYTES_PER_TRANSITION = 2 * 4 * 84 * 84  # obs + next_obs stacks (28,224 when optimized)
ORIGINAL_BYTES_PER_TRANSITION = 2 * 4 * 84 * 84 * 4  # float32 state + next_state


def cpu_model() -> str:
    """The CPU's model name, as `lscpu` prints it (Linux), for the record."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "")
    except OSError:
        return platform.processor()


def interleaved(windows: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each named window `repeats` times, round-robin; returns the rates per name."""
    rates: dict[str, list[float]] = {name: [] for name in windows}
    for _ in range(repeats):
        for name, window in windows.items():
            rates[name].append(window())
    return rates


# ---- env only -------------------------------------------------------------------------------
def gym_env_window(steps: int) -> Callable[[], float]:
    """One gymnasium env with the standard Atari wrappers, random actions."""
    cfg = EnvConfig(id=GAME, backend=EnvBackend.gymnasium)
    env = make_vector_env(cfg, 1)
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def window() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            env.step(rng.integers(6, size=1))
        return steps / (time.perf_counter() - start)

    return window


def collector_window(steps: int, num_envs: int, batch_size: int) -> Callable[[], float]:
    """Our collector: ale-py vector env, random actions, transitions written to the replay."""
    cfg = EnvConfig(id=GAME)
    envs = make_vector_env(cfg, num_envs, batch_size)
    replay = FrameReplayBuffer(
        100_000, num_envs, (4, 84, 84), np.uint8, torch.device("cpu"), True, n_step=1, gamma=0.99
    )
    collector = Collector(envs, replay, terminal_on_life_loss=True, clip_rewards=True)
    _obs, env_ids = collector.reset(seed=0)
    rng = np.random.default_rng(0)
    state = {"env_ids": env_ids}

    def window() -> float:
        done = 0
        start = time.perf_counter()
        while done < steps:
            collector.send(state["env_ids"], rng.integers(6, size=len(state["env_ids"])))
            _, state["env_ids"], outcome = collector.recv()
            done += int(outcome.is_transition.sum())
        return done / (time.perf_counter() - start)

    return window


# ---- learner only ---------------------------------------------------------------------------
def filled_replay(transitions: int, n_step: int = 1, future_steps: int = 0) -> FrameReplayBuffer:
    """A replay buffer with `transitions` random Atari transitions in 8 envs (sampling
    `future_steps` observations ahead for SPR's loss)."""
    rng = np.random.default_rng(0)
    replay = FrameReplayBuffer(
        transitions + 800,
        8,
        (4, 84, 84),
        np.uint8,
        torch.device("cpu"),
        stacked=True,
        n_step=n_step,
        gamma=0.99,
        future_steps=future_steps,
    )
    ids = np.arange(8)
    replay.start_episodes(ids, rng.integers(0, 256, (8, 4, 84, 84), dtype=np.uint8))
    for _ in range(transitions // 8):
        replay.add(
            ids,
            rng.integers(6, size=8),
            rng.standard_normal(8),
            rng.random(8) < 0.01,
            rng.integers(0, 256, (8, 4, 84, 84), dtype=np.uint8),
        )
    return replay


def learner_window(
    replay: FrameReplayBuffer,
    updates: int,
    precision: Precision,
    channels_last: bool,
    double_q: bool = False,
) -> Callable[[], float]:
    """Sample a batch of 32 and take a gradient step, `updates` times."""
    run = load_run_config(compose_config([f"agent.double_q={double_q}"]))
    torch.manual_seed(0)
    agent = DQNAgent(
        NatureCNN((4, 84, 84), 6),
        6,
        run.agent,
        torch.device("cpu"),
        precision,
        channels_last,
    )
    rng = np.random.default_rng(0)

    def window() -> float:
        start = time.perf_counter()
        loss = torch.zeros(())
        for _ in range(updates):
            loss = agent.update(replay.sample(32, rng))[0]["td_loss"]
        float(loss)  # wait for the last update
        return updates / (time.perf_counter() - start)

    return window


def sample_window(replay: FrameReplayBuffer, samples: int) -> Callable[[], float]:
    """Sample a batch of 32 (rebuild its stacks), `samples` times: the replay's share."""
    rng = np.random.default_rng(0)

    def window() -> float:
        start = time.perf_counter()
        for _ in range(samples):
            replay.sample(32, rng)
        return samples / (time.perf_counter() - start)

    return window


# ---- end to end -----------------------------------------------------------------------------
E2E_OVERRIDES = [
    f"env={GAME}",
    "agent.buffer_size=100000",
    "agent.batch_size=32",
    "agent.train_freq=4",
    "agent.gradient_steps=1",
    "agent.target_update_interval=1000",
    "agent.exploration_initial_eps=0.01",
    "agent.exploration_final_eps=0.01",
    "eval.interval_steps=1000000000",
    "checkpoint.interval_steps=1000000000",
]


def ours_e2e_window(
    steps: int, learning_starts: int, overrides: list[str], base: list[str] = E2E_OVERRIDES
) -> Callable[[], float]:
    """Our trainer (at the standard ratio with `base`), after `learning_starts` steps of
    warm-up."""
    cfg = load_run_config(
        compose_config(
            [
                *base,
                f"agent.learning_starts={learning_starts}",
                f"total_steps={learning_starts + 1}",
                *overrides,
            ]
        )
    )
    run_dir = Path(tempfile.mkdtemp(prefix="bench-"))
    trainer = Trainer(cfg, run_dir)
    logger = RunLogger(run_dir, 10**12)
    trainer.cfg.total_steps = learning_starts  # warm-up: fill the replay, no updates yet
    trainer.train_loop(logger)

    def window() -> float:
        start_steps, start = trainer.state.env_steps, time.perf_counter()
        trainer.cfg.total_steps = start_steps + steps
        trainer.train_loop(logger)
        return (trainer.state.env_steps - start_steps) / (time.perf_counter() - start)

    return window


def sb3_e2e_window(steps: int, learning_starts: int) -> Callable[[], float] | None:
    """Stable-Baselines3's DQN("CnnPolicy") with the same settings, one env (its default)."""
    try:
        from stable_baselines3 import DQN
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack
    except ImportError:
        logging.warning("stable-baselines3 is not installed (pip install -e '.[bench]'): skipped")
        return None
    env = VecFrameStack(
        make_atari_env(
            "ALE/SpaceInvaders-v5",
            n_envs=1,
            seed=0,
            env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0},
        ),
        n_stack=4,
    )
    model = DQN(
        "CnnPolicy",
        env,
        buffer_size=100_000,
        learning_starts=learning_starts,
        batch_size=32,
        train_freq=4,
        gradient_steps=1,
        target_update_interval=1000,
        exploration_initial_eps=0.01,
        exploration_final_eps=0.01,
        optimize_memory_usage=False,
        device="cpu",
        seed=0,
        verbose=0,
    )
    model.learn(learning_starts)

    def window() -> float:
        start = time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        return steps / (time.perf_counter() - start)

    return window


# ---- Atari 100k: augmentation and the data-efficient update ---------------------------------
def fancy_index_shift(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """The random shift as one index with four broadcast arrays: what `shift_frames` replaced
    (same output, tested), kept here as the reference it is timed against."""
    batch, stack, height, width = frames.shape
    rows = (torch.arange(height) + shifts[:, :1]).clamp(0, height - 1)
    cols = (torch.arange(width) + shifts[:, 1:]).clamp(0, width - 1)
    b = torch.arange(batch)[:, None, None, None]
    s = torch.arange(stack)[None, :, None, None]
    return frames[b, s, rows[:, None, :, None], cols[:, None, None, :]]


def augmentation_window(kind: str, calls: int) -> Callable[[], float]:
    """One augmentation of a batch of 32 uint8 stacks, `calls` times."""
    from dqn.augmentation import random_intensity, shift_frames

    frames = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8)
    shifts = torch.randint(-4, 5, (32, 2))
    ops = {
        "shift_fancy_index": lambda: fancy_index_shift(frames, shifts),
        "shift_index_select": lambda: shift_frames(frames, shifts),
        "intensity": lambda: random_intensity(frames, 0.05),
    }
    op = ops[kind]

    def window() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            op()
        return calls / (time.perf_counter() - start)

    return window


def atari100k_learner_window(
    replay: FrameReplayBuffer, updates: int, overrides: list[str], float32_intensity: bool = False
) -> Callable[[], float]:
    """Sample and update with `experiment=atari100k`'s agent and network (plus overrides);
    `float32_intensity` times the reference that scales frames in float32 whatever the
    autocast dtype, against the augmentation's scaling into that dtype."""
    import dqn.agent
    from dqn.augmentation import random_intensity
    from dqn.networks import build_network

    run = load_run_config(compose_config(["experiment=atari100k", *overrides]))
    torch.manual_seed(0)
    network = build_network(run.network, (4, 84, 84), 6, **run.agent.head_kwargs())
    precision = resolve_precision(run.hw.precision, torch.device("cpu"))
    agent = DQNAgent(network, 6, run.agent, torch.device("cpu"), precision)
    rng = np.random.default_rng(0)

    def float32_reference(frames: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
        return random_intensity(frames, scale)

    def window() -> float:
        if float32_intensity:
            dqn.agent.random_intensity = float32_reference  # type: ignore[assignment]
        try:
            start = time.perf_counter()
            for _ in range(updates):
                agent.update(replay.sample(32, rng))
            return updates / (time.perf_counter() - start)
        finally:
            dqn.agent.random_intensity = random_intensity

    return window


ATARI100K_UPDATES = {
    "100k_no_augmentation": ["agent.random_shift_pad=0", "agent.intensity_scale=0"],
    "100k_shift_only": ["agent.intensity_scale=0"],
    "100k_preset": [],
    "100k_features_256": ["network.features_dim=256"],
    "100k_der_cnn": ["network=der_cnn", "network.dueling=true"],
    "100k_der_cnn_spr": ["network=der_cnn", "network.dueling=true", "agent.spr_weight=2"],
    "100k_spr": ["agent.spr_weight=2"],
}
FLOAT32_INTENSITY = ("100k_preset", "100k_der_cnn_spr")  # timed again with the reference


def atari100k_section(repeats: int, updates: int, steps: int) -> dict[str, list[float]]:
    """The Atari 100k preset's costs: each augmentation alone, updates with and without it and
    with the smaller networks, and the whole run loop (one env, one update per step)."""
    rates = interleaved(
        {
            kind: augmentation_window(kind, 10 * updates)
            for kind in ("shift_fancy_index", "shift_index_select", "intensity")
        },
        repeats,
    )
    replay = filled_replay(10_000, n_step=10)
    spr_replay = filled_replay(10_000, n_step=10, future_steps=5)  # SPR's 5 steps ahead

    def window(overrides: list[str], float32_intensity: bool = False) -> Callable[[], float]:
        spr = "agent.spr_weight=2" in overrides
        return atari100k_learner_window(
            spr_replay if spr else replay, updates, overrides, float32_intensity
        )

    windows = {name: window(overrides) for name, overrides in ATARI100K_UPDATES.items()}
    for name in FLOAT32_INTENSITY:
        windows[f"{name}_float32_intensity"] = window(ATARI100K_UPDATES[name], True)
    rates.update(interleaved(windows, repeats))
    base = [
        "experiment=atari100k",
        "env=pong",
        "eval.interval_steps=1000000000",
        "checkpoint.interval_steps=1000000000",
        "checkpoint.save_replay=false",
    ]
    rates.update(
        interleaved(
            {
                "100k_e2e_preset": ours_e2e_window(steps, 1600, [], base),
                "100k_e2e_der_cnn": ours_e2e_window(
                    steps, 1600, ["network=der_cnn", "network.dueling=true"], base
                ),
                "100k_e2e_der_cnn_spr": ours_e2e_window(
                    steps, 1600, ATARI100K_UPDATES["100k_der_cnn_spr"], base
                ),
            },
            repeats,
        )
    )
    return rates


# ---- memory ---------------------------------------------------------------------------------
REPLAY_MEMORY_PROBE = """
import numpy as np, torch
from dqn.replay import FrameReplayBuffer

def peak_rss():  # VmHWM: this process's peak resident memory (ru_maxrss survives fork+exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

before = peak_rss()
buf = FrameReplayBuffer(100_000, 8, (4, 84, 84), np.uint8, torch.device("cpu"), stacked=True,
                        n_step=1, gamma=0.99)
ids = np.arange(8)
frames = np.random.default_rng(0).integers(0, 256, (8, 4, 84, 84), dtype=np.uint8)
buf.start_episodes(ids, frames)
for _ in range(100_000 // 8 + 8):
    buf.add(ids, np.zeros(8, int), np.zeros(8), np.zeros(8, bool), frames)
after = peak_rss()
nbytes = sum(a.nbytes for a in (buf.frames, buf.actions, buf.rewards, buf.dones,
                                buf.episode_start, buf.valid))
print(nbytes / buf.capacity, before * 1024, after * 1024)
"""


def replay_memory() -> tuple[float, float, float]:
    """Bytes per transition of a filled 100k replay, and the process's peak RSS (bytes) before
    and after filling it, measured in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", REPLAY_MEMORY_PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, under 5 minutes")
    parser.add_argument("--json", type=Path, default=Path("outputs/benchmark.json"))
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--atari100k-only",
        action="store_true",
        help="only the Atari 100k section: augmentations, its updates, its run loop",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    keep_freed_memory()  # as the trainer does (the SB3 subprocess runs without it)
    flush_denormals()
    repeats = args.repeats or (3 if args.quick else 5)
    env_steps, updates, e2e_steps = (2000, 100, 600) if args.quick else (5000, 300, 2000)
    learning_starts = 1000 if args.quick else 2000
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {cpu_model()}",
        "quick": args.quick,
        "repeats": repeats,
    }

    print("Atari 100k ...", file=sys.stderr)
    small = atari100k_section(repeats, updates, e2e_steps)
    small_med = {k: statistics.median(v) for k, v in small.items()}
    results["atari100k"] = {"medians": small_med, "samples": small}
    results["atari100k_ratios"] = {
        "shift_index_select_vs_fancy_index": small_med["shift_index_select"]
        / small_med["shift_fancy_index"],
        "update_preset_vs_float32_intensity": small_med["100k_preset"]
        / small_med["100k_preset_float32_intensity"],
        "update_der_cnn_spr_vs_float32_intensity": small_med["100k_der_cnn_spr"]
        / small_med["100k_der_cnn_spr_float32_intensity"],
        "update_preset_vs_no_augmentation": small_med["100k_preset"]
        / small_med["100k_no_augmentation"],
        "update_der_cnn_vs_preset": small_med["100k_der_cnn"] / small_med["100k_preset"],
        "update_spr_vs_preset": small_med["100k_spr"] / small_med["100k_preset"],
        "update_der_cnn_spr_vs_der_cnn": small_med["100k_der_cnn_spr"] / small_med["100k_der_cnn"],
    }
    print(f"\n{'Atari 100k':<64}{'median':>12}  unit")
    for name, value in small_med.items():
        unit = (
            "calls/s"
            if not name.startswith("100k")
            else ("env steps/s" if "e2e" in name else "updates/s")
        )
        print(f"{name:<64}{value:>12.1f}  {unit}")
    if args.atari100k_only:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
        return

    print("env only ...", file=sys.stderr)
    env_rates = interleaved(
        {
            "gym_single": gym_env_window(env_steps),
            "collector_sync_8": collector_window(env_steps, 8, 0),
            "collector_async_8x4": collector_window(env_steps, 8, 4),
        },
        repeats,
    )

    print("learner only ...", file=sys.stderr)
    replay = filled_replay(10_000)
    learner_rates = interleaved(
        {
            "fp32": learner_window(replay, updates, Precision.fp32, False),
            "fp32_channels_last": learner_window(replay, updates, Precision.fp32, True),
            "bf16": learner_window(replay, updates, Precision.bf16, False),
            "bf16_channels_last": learner_window(replay, updates, Precision.bf16, True),
        },
        repeats,
    )

    print("update variants ...", file=sys.stderr)
    run = load_run_config(compose_config())
    precision = resolve_precision(run.hw.precision, torch.device("cpu"))
    variant_rates = interleaved(
        {
            "update_dqn": learner_window(replay, updates, precision, False),
            "update_double_q": learner_window(replay, updates, precision, False, True),
            "sample_only": sample_window(replay, 10 * updates),
        },
        repeats,
    )

    print("end to end ...", file=sys.stderr)
    default_learner = ("bf16" if precision == Precision.bf16 else "fp32") + (
        "_channels_last" if run.hw.channels_last else ""
    )
    e2e_windows = {
        "ours": ours_e2e_window(e2e_steps, learning_starts, []),
        "ours_fp32": ours_e2e_window(e2e_steps, learning_starts, ["hw.precision=fp32"]),
        "ours_async": ours_e2e_window(e2e_steps, learning_starts, ["hw.env_batch_size=4"]),
    }
    sb3 = sb3_e2e_window(e2e_steps, learning_starts)
    if sb3 is not None:
        e2e_windows["sb3"] = sb3
    e2e_rates = interleaved(e2e_windows, repeats)

    print("replay memory ...", file=sys.stderr)
    bytes_per_transition, rss_before, rss_after = replay_memory()

    all_rates = {**env_rates, **learner_rates, **variant_rates, **e2e_rates}
    med = {k: statistics.median(v) for k, v in all_rates.items()}
    learner = med[default_learner]
    e2e = med["ours"]  # hw=cpu as configured: 8 envs in step, precision auto
    env_rate = max(med["collector_sync_8"], med["collector_async_8x4"])
    results.update(
        {
            "gym_env_steps_per_s": med["gym_single"],
            "env_steps_per_s": env_rate,
            "learner_updates_per_s": learner,
            "learner_variant": default_learner,
            "e2e_steps_per_s": e2e,
            "e2e_fp32_steps_per_s": med["ours_fp32"],
            "sb3_e2e_steps_per_s": med.get("sb3"),
            "replay_bytes_per_transition": bytes_per_transition,
            "replay_100k_peak_rss_bytes": rss_after,
            "replay_100k_rss_increase_bytes": rss_after - rss_before,
            "medians": med,
            "samples": all_rates,
        }
    )
    ratios = {
        "env_vs_gym": env_rate / med["gym_single"],
        "e2e_vs_learner_bound": e2e / (4 * learner),
        "e2e_vs_sb3": e2e / med["sb3"] if "sb3" in med else None,
        "e2e_fp32_vs_sb3": med["ours_fp32"] / med["sb3"] if "sb3" in med else None,
        "sample_share_of_double_q_update": med["update_double_q"] / med["sample_only"],
    }
    results["ratios"] = ratios

    rows = [
        ("env only: one gymnasium env + Atari wrappers", med["gym_single"], "steps/s"),
        ("env only: our collector, 8 envs sync", med["collector_sync_8"], "steps/s"),
        (
            "env only: our collector, 8 envs async (batches of 4)",
            med["collector_async_8x4"],
            "steps/s",
        ),
        *[
            (f"learner, batch 32 (sample + update): {k}", med[k], "updates/s")
            for k in learner_rates
        ],
        (f"update, {precision.value}: DQN", med["update_dqn"], "updates/s"),
        (
            f"update, {precision.value}: Double-Q, two online passes",
            med["update_double_q"],
            "updates/s",
        ),
        ("replay sample of 32 (stacks rebuilt), alone", med["sample_only"], "samples/s"),
        (f"end to end, ours (8 envs sync, {default_learner})", med["ours"], "env steps/s"),
        ("end to end, ours (8 envs sync, fp32 like SB3)", med["ours_fp32"], "env steps/s"),
        ("end to end, ours (8 envs async, batches of 4)", med["ours_async"], "env steps/s"),
        (
            "end to end, SB3 DQN CnnPolicy (1 env, fp32)",
            med.get("sb3", float("nan")),
            "env steps/s",
        ),
        ("replay bytes per transition (ours)", bytes_per_transition, "bytes"),
        (
            "replay bytes per transition (SB3 / SB3 optimized / original)",
            SB3_BYTES_PER_TRANSITION,
            f"/ {SB3_BYTES_PER_TRANSITION // 2} / {ORIGINAL_BYTES_PER_TRANSITION}",
        ),
        ("peak RSS with a filled 100k replay", rss_after / 2**20, "MiB"),
    ]
    print(f"\n{'what':<64}{'median':>12}  unit")
    for name, value, unit in rows:
        print(f"{name:<64}{value:>12.1f}  {unit}")
    print(
        f"\nratios: env/gym {ratios['env_vs_gym']:.2f}x (target >= 2), "
        f"e2e/(4 x learner {default_learner}) {ratios['e2e_vs_learner_bound']:.2f} "
        f"(target >= 0.9), e2e/SB3 "
        + (
            f"{ratios['e2e_vs_sb3']:.2f}x, fp32 vs fp32 {ratios['e2e_fp32_vs_sb3']:.2f}x"
            if ratios["e2e_vs_sb3"]
            else "n/a"
        )
        + " (target >= 1.4)"
    )
    print(f"sampling is {ratios['sample_share_of_double_q_update']:.1%} of a Double-Q update")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
