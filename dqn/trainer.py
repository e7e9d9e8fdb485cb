"""The training run: one `Trainer` owns envs, agent, replay, logs and checkpoints.

Read `Trainer.train` top to bottom: act, step the envs, store transitions, learn on the replay
ratio the config gives, then the cadences (log, evaluate, checkpoint), all counted in env steps.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from dqn.agent import DQNAgent
from dqn.checkpoint import (
    RunState,
    TrainingCheckpoint,
    load_arrays,
    load_latest,
    save_arrays,
    save_checkpoint,
)
from dqn.collector import Collector
from dqn.config import (
    MAX_SEED,
    ConfigError,
    EnvKind,
    ExplorationSchedule,
    LearningRateSchedule,
    RunConfig,
    config_dict,
)
from dqn.envs import action_count, make_vector_env, observation_format
from dqn.evaluation import EvalProtocol, EvalResult, eval_figures, evaluate
from dqn.hardware import (
    flush_denormals,
    keep_freed_memory,
    resolve_device,
    resolve_precision,
)
from dqn.logger import RunLogger
from dqn.networks import build_network
from dqn.replay import (
    FrameReplayBuffer,
    PrioritizedFrameReplayBuffer,
    build_replay,
    plan_capacity,
)
from dqn.resume import check_same_run
from dqn.returns import (
    annealed_horizon,
    decay_after_hold,
    exponential_schedule,
    linear_schedule,
    run_progress,
    updates_owed,
)
from dqn.video import AgentViewGif

log = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 1_000_000  # eval games never share seeds with training games


def crossed(before: int, after: int, every: int) -> bool:
    """True when a multiple of `every` lies in (before, after]."""
    return after // every > before // every


REPLAY_SNAPSHOT = "replay.npz"


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk); the message says what survived."""


@dataclass
class Signals:
    """What arrived while the training loop ran (see `stop_signals`)."""

    stop: str | None = None  # the name of a signal that asks the run to stop (SIGINT, SIGTERM)
    deferred: list[tuple[int, Callable[..., Any]]] = field(default_factory=list)

    def run_deferred(self) -> None:
        """Run, now, the handlers of others whose signals arrived since the last call. The loop
        calls this between steps, so a handler that ends the process (submitit's requeue
        raises SystemExit) never lands inside an update, and `last.pt` is written whole."""
        while self.deferred:
            signum, handler = self.deferred.pop(0)
            handler(signum, None)


# Signals a scheduler or a user sends to end a run: SLURM's preemption warning (submitit uses
# SIGUSR2), its SIGTERM, and Ctrl-C.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@contextmanager
def stop_signals() -> Iterator[Signals]:
    """While the block runs, Ctrl-C (SIGINT) and SIGTERM, where no one else handles them, only
    record themselves in the yielded `Signals.stop`; a handler someone else installed
    (submitit's, a launcher's) for these or SIGUSR1/2 is deferred to `Signals.deferred`. The
    training loop acts on both between steps, so neither lands in the middle of a replay write
    or an update, and the state it saves is whole. Main thread only."""
    signals = Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return

    previous = {int(signum): signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    others: dict[int, Callable[..., Any]] = {}  # handlers someone else installed

    def record_stop(signum: int, frame: object) -> None:
        signals.stop = signals.stop or signal.Signals(signum).name

    def defer(signum: int, frame: object) -> None:
        signals.deferred.append((signum, others[signum]))

    ours: dict[int, Callable[[int, Any], None]] = {}
    for signum, handler in previous.items():
        if handler in (signal.default_int_handler, signal.SIG_DFL):
            if signum in (signal.SIGINT, signal.SIGTERM):
                ours[signum] = record_stop
        elif callable(handler):
            others[signum] = handler
            ours[signum] = defer
    for signum, ours_handler in ours.items():
        signal.signal(signum, ours_handler)
    try:
        yield signals
    finally:
        for signum in ours:
            signal.signal(signum, previous[signum])


@dataclass
class RunParts:
    """What a run is built of (`build_run`): the pieces the training loop drives."""

    agent: DQNAgent  # on the run's device (`agent.device`)
    replay: FrameReplayBuffer
    collector: Collector  # the training envs, stepping into the replay
    eval_envs: gym.vector.VectorEnv
    rng: np.random.Generator  # the run's numpy randomness: actions, replay samples, game seeds


def build_run(cfg: RunConfig) -> RunParts:
    """Build a fresh run from its config: the process settings (threads, subnormals), the
    seeds, the device, the envs, the network and its agent, the replay and the collector."""
    keep_freed_memory()
    flush_denormals()
    device = resolve_device(cfg.hw.device, cfg.hw.precision)
    precision = resolve_precision(cfg.hw.precision, device)
    if cfg.hw.torch_threads:
        torch.set_num_threads(cfg.hw.torch_threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    envs = make_vector_env(cfg.env, cfg.hw.num_envs, cfg.hw.env_batch_size, cfg.hw.env_threads)
    eval_envs = make_vector_env(cfg.env, min(cfg.eval.num_envs, cfg.eval.episodes))
    obs_shape, obs_dtype = observation_format(envs)
    n_actions = action_count(envs)
    q_net = build_network(cfg.network, obs_shape, n_actions, **cfg.agent.head_kwargs())
    agent = DQNAgent(
        q_net, n_actions, cfg.agent, device, precision, cfg.hw.channels_last, cfg.hw.compile_mode
    )
    stacked = cfg.env.kind == EnvKind.atari  # Atari observations are stacks of frames
    frame_shape = obs_shape[1:] if stacked else obs_shape
    capacity = plan_capacity(
        cfg.agent.buffer_size, cfg.hw.replay_memory_gib, frame_shape, obs_dtype
    )
    if capacity < cfg.agent.batch_size:
        raise ConfigError(
            f"hw.replay_memory_gib={cfg.hw.replay_memory_gib} holds {capacity} transitions, "
            f"fewer than agent.batch_size={cfg.agent.batch_size}: raise it."
        )
    replay = build_replay(
        cfg.agent, capacity, cfg.hw.num_envs, obs_shape, obs_dtype, device, stacked
    )
    collector = Collector(envs, replay, cfg.env.terminal_on_life_loss, cfg.env.clip_rewards)
    log.info(
        "%s: %d envs, observations %s %s, %d actions, replay %d transitions, device %s",
        cfg.env.id,
        cfg.hw.num_envs,
        obs_shape,
        obs_dtype,
        n_actions,
        capacity,
        device,
    )
    return RunParts(agent, replay, collector, eval_envs, rng)


class Trainer:
    """Owns one training run in `run_dir` (Hydra's output directory): the loop, its cadences
    and the learning. If that directory holds a checkpoint, the run continues from it."""

    def __init__(self, cfg: RunConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        parts = build_run(cfg)
        self.agent, self.replay = parts.agent, parts.replay
        self.collector, self.eval_envs, self.rng = parts.collector, parts.eval_envs, parts.rng
        # The counters, saved and restored whole; see `RunState`.
        self.state = RunState(games_seed=cfg.seed)
        self._ready: tuple[np.ndarray, np.ndarray] | None = None  # obs, env ids awaiting actions
        self._started = time.perf_counter()
        if cfg.checkpoint.exact_resume and not cfg.checkpoint.save_replay:
            log.warning(
                "checkpoint.exact_resume=true restarts every training game at each checkpoint, "
                "but without checkpoint.save_replay=true a resumed run refills its replay and "
                "is not exact: set both, or neither."
            )
        self.restore()

    @property
    def last_eval(self) -> EvalResult | None:
        """The latest evaluation (None before the first)."""
        return None if self.state.last_eval is None else EvalResult(self.state.last_eval)

    # ---- schedules -------------------------------------------------------------------------
    def progress(self) -> float:
        """Share of the run done for the annealed schedules (epsilon, PER beta, the learning
        rate): 0 at the start, 1 at `total_steps`. Resuming with a larger `total_steps` keeps
        the steps already taken as they were and stretches only the rest (`run_progress`)."""
        return run_progress(self.state.env_steps, self.cfg.total_steps, *self.state.schedule_origin)

    def epsilon(self) -> float:
        """Exploration rate at the current env step: 1 (uniformly random actions) before
        `learning_starts`, as in SB3 and Dopamine; then the schedule, or 0 with noisy nets,
        whose learned noise explores."""
        a = self.cfg.agent
        if self.state.env_steps < a.learning_starts:
            return 1.0
        if a.noisy_nets:
            return 0.0
        if a.exploration_schedule == ExplorationSchedule.exponential:
            return exponential_schedule(
                a.exploration_initial_eps,
                a.exploration_final_eps,
                a.exploration_decay,
                self.state.env_steps,
            )
        return linear_schedule(
            a.exploration_initial_eps,
            a.exploration_final_eps,
            a.exploration_fraction,
            self.progress(),
        )

    def priority_beta(self) -> float:
        """Prioritized replay's importance-weight exponent, annealed to 1 at `total_steps`."""
        start = self.cfg.agent.priority_beta_start
        return linear_schedule(start, 1.0, 1.0, self.progress())

    # ---- the loop --------------------------------------------------------------------------
    def train(self) -> dict:
        """Run to `total_steps` (or until Ctrl-C or SIGTERM), then evaluate, checkpoint and
        write summary.json. `summary["stopped_by"]` names the signal that stopped the run."""
        # A resumed run hides what its previous process logged after the checkpoint.
        logger = RunLogger(
            self.run_dir,
            self.cfg.total_steps,
            self.state.env_steps,
            purge_step=self.state.env_steps + 1 if self.state.resumes else None,
        )
        if not self.state.resumes:
            logger.hparams(config_dict(self.cfg))
        self._started = time.perf_counter()
        with stop_signals() as signals:
            try:
                with logging_redirect_tqdm():
                    self.train_loop(logger, signals)
            except CheckpointWriteError:
                logger.close()
                raise
            except SystemExit:  # another handler ended the process (submitit's requeue)
                log.warning(
                    "Exiting at %d env steps (requeue or shutdown): saving checkpoints/last.pt.",
                    self.state.env_steps,
                )
                self.save("last.pt")
                logger.close()
                raise
            except BaseException:
                # The state may be half-updated (NaN weights, a failed write): keep it apart
                # from last.pt, so that a restart resumes from the last good checkpoint.
                log.exception(
                    "Training failed at %d env steps: saving checkpoints/crash.pt; "
                    "a restart resumes from checkpoints/last.pt.",
                    self.state.env_steps,
                )
                self.save("crash.pt")
                logger.close()
                raise
            stopped_by = signals.stop
            if stopped_by:
                log.warning(
                    "%s at %d env steps: saving checkpoints/last.pt.",
                    stopped_by,
                    self.state.env_steps,
                )
            if stopped_by is None and self.state.last_eval_step != self.state.env_steps:
                self.run_evaluation(logger)
            # Training wall-clock with every evaluation in it, the final one included.
            wall_seconds = self.wall_seconds()
            # A finished run's replay is only needed to extend it later (checkpoint.keep_replay).
            keep_replay = stopped_by is not None or self.cfg.checkpoint.keep_replay
            self.save("last.pt", wall_seconds, with_replay=keep_replay)  # signals wait for it
            if not keep_replay:
                (self.checkpoint_dir / REPLAY_SNAPSHOT).unlink(missing_ok=True)
            if stopped_by is None:
                self.write_final_evaluation(wall_seconds)
            summary = self.summary(wall_seconds, signals.stop)
        logger.hparams_result(
            config_dict(self.cfg),
            {key: summary[key] for key in ("eval_return_mean", "best_eval_return", "env_steps")},
        )
        logger.close()
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("Done: %s", json.dumps(summary))
        return summary

    def train_loop(self, logger: RunLogger, signals: Signals | None = None) -> None:
        """Act, step, store, learn, and keep the cadences, until `total_steps` env steps or
        until `signals` asks to stop; the signals' deferred handlers run between steps."""
        signals = Signals() if signals is None else signals
        cfg = self.cfg
        if self._ready is None:  # a new run, or a resumed one: fresh games everywhere
            self._ready = self.collector.reset(seed=self.state.games_seed)
        obs, env_ids = self._ready
        window_start, window_steps = time.perf_counter(), self.state.env_steps
        while self.state.env_steps < cfg.total_steps and signals.stop is None:
            epsilon = self.epsilon()
            self.collector.send(env_ids, self.agent.act(obs, epsilon, self.rng))
            self.learn()  # while the emulators play
            obs, env_ids, outcome = self.collector.recv()
            self._ready = obs, env_ids
            before = self.state.env_steps
            self.state.env_steps += int(outcome.is_transition.sum())
            for episode in outcome.episodes:
                self.state.episodes += 1
                self.state.recent_returns.append(episode.episode_return)
                logger.scalars(
                    self.state.env_steps,
                    {
                        "charts/episodic_return": episode.episode_return,
                        "charts/episodic_length": episode.length,
                        "charts/episodic_return_first_life": episode.first_life_return,
                    },
                )
            if cfg.agent.target_update_interval and crossed(
                before, self.state.env_steps, cfg.agent.target_update_interval
            ):
                self.agent.sync_target()

            logger.advance(self.state.env_steps - before)
            if crossed(before, self.state.env_steps, cfg.log_interval_steps):
                now = time.perf_counter()
                sps = (self.state.env_steps - window_steps) / max(now - window_start, 1e-9)
                window_start, window_steps = now, self.state.env_steps
                verbose = crossed(before, self.state.env_steps, 10 * cfg.log_interval_steps)
                self.log_scalars(logger, epsilon, sps, verbose)
            if crossed(before, self.state.env_steps, cfg.eval.interval_steps):
                self.run_evaluation(logger)
            if crossed(before, self.state.env_steps, cfg.checkpoint.interval_steps):
                logger.flush()  # everything up to the checkpoint is on disk with it
                if cfg.checkpoint.exact_resume:
                    self.checkpoint_boundary()
                    obs, env_ids = self._ready
                else:
                    self.save("last.pt")  # the games in progress go on untouched
            signals.run_deferred()  # a step boundary: whatever they do meets whole state
        # The updates owed by the very last step are left to a resumed run's first `learn`,
        # where an uninterrupted run would do them: that keeps a resumed run exact.

    def checkpoint_boundary(self) -> None:
        """With `checkpoint.exact_resume`: save `last.pt` (and the replay), then, with
        synchronous stepping, start fresh games everywhere: the games in progress end as
        truncations (bootstrapped, not logged as finished games). The checkpoint then holds the
        whole state of the run, so a run resumed from it continues exactly as the
        uninterrupted run does. The price: no game outlives a checkpoint interval."""
        if self.collector.synchronous:
            self.state.games_seed = int(self.rng.integers(0, MAX_SEED))  # saved with the checkpoint
        self.save("last.pt")
        if self.collector.synchronous:
            self._ready = self.collector.reset(seed=self.state.games_seed)

    def learn(self) -> None:
        """Do the gradient steps the replay ratio owes."""
        if len(self.replay) < self.cfg.agent.batch_size:
            return
        a = self.cfg.agent
        due = updates_owed(self.state.env_steps, a.learning_starts, a.train_freq, a.gradient_steps)
        due -= self.state.forgiven_updates
        if self.state.updates >= due:
            self.redraw_idle_noise()
            return
        beta = self.priority_beta()
        if a.lr_schedule == LearningRateSchedule.linear:
            self.agent.set_lr(decay_after_hold(a.lr, a.lr_decay_start, self.progress()))
        while self.state.updates < due:
            if a.anneal_updates:  # the horizon restarts with each reset, as BBF's
                cycle = (
                    self.state.updates % a.reset_interval
                    if a.reset_interval
                    else self.state.updates
                )
                self.replay.set_horizon(
                    *annealed_horizon(
                        a.n_step, a.n_step_final, a.gamma_initial, a.gamma, cycle / a.anneal_updates
                    )
                )
            batch = self.replay.sample(a.batch_size, self.rng, beta)
            metrics, priorities = self.agent.update(batch)
            if isinstance(self.replay, PrioritizedFrameReplayBuffer):
                self.replay.update_priorities(batch.indices, priorities.float().cpu().numpy())
            for key, value in metrics.items():
                self.state.metric_sums[key] = self.state.metric_sums.get(key, 0) + value
            self.state.metric_count += 1
            self.state.updates += 1
            if a.reset_interval and self.state.updates % a.reset_interval == 0:
                self.agent.reset_parameters(a.reset_shrink)
                log.info(
                    "Reset at %d updates (torso shrink %.2f).", self.state.updates, a.reset_shrink
                )
        self.state.noise_round = (self.state.env_steps - a.learning_starts) // a.train_freq

    def redraw_idle_noise(self) -> None:
        """With noisy nets, draw new acting noise once per `train_freq` env steps while no
        update does it (a resumed run refilling its replay), as updates would have."""
        a = self.cfg.agent
        if not a.noisy_nets or self.state.env_steps < a.learning_starts:
            return  # before learning_starts every action is random
        round_ = (self.state.env_steps - a.learning_starts) // a.train_freq
        if round_ != self.state.noise_round:
            self.state.noise_round = round_
            self.agent.reset_noise()

    def log_scalars(self, logger: RunLogger, epsilon: float, sps: float, verbose: bool) -> None:
        """Write the periodic scalars (one host sync per log interval, not per update)."""
        scalars = {
            "charts/epsilon": epsilon,
            "charts/learning_rate": self.agent.optimizer.param_groups[0]["lr"],
            "charts/SPS": sps,
        }
        if self.state.metric_count:
            for key, total in self.state.metric_sums.items():
                scalars[f"losses/{key}"] = float(total) / self.state.metric_count
            self.state.metric_sums, self.state.metric_count = {}, 0
        logger.scalars(self.state.env_steps, scalars)
        recent = (
            float(np.mean(self.state.recent_returns)) if self.state.recent_returns else float("nan")
        )
        logger.advance(0, sps=f"{sps:.0f}", ret=f"{recent:.1f}", eps=f"{epsilon:.3f}")
        if verbose:
            log.info(
                "step %d  episodes %d  updates %d  return(100) %.1f  epsilon %.3f  SPS %.0f",
                self.state.env_steps,
                self.state.episodes,
                self.state.updates,
                recent,
                epsilon,
                sps,
            )

    def run_evaluation(self, logger: RunLogger) -> EvalResult:
        """Evaluate the online network; keep `best.pt` when it beats every earlier score."""
        gif = AgentViewGif() if self.cfg.eval.video and self.cfg.env.kind == EnvKind.atari else None
        result = evaluate(
            self.agent,
            self.eval_envs,
            self.cfg.eval.episodes,
            self.cfg.eval.epsilon,
            seed=self.cfg.seed + EVAL_SEED_OFFSET,
            recorder=gif,
        )
        if gif is not None:
            logger.video(
                "eval/video", gif.frames, self.state.env_steps, 60 / self.cfg.env.frame_skip
            )
        self.state.last_eval, self.state.last_eval_step = result.episodes, self.state.env_steps
        logger.scalars(
            self.state.env_steps,
            {
                "eval/episodic_return": result.mean,
                "eval/episodic_return_std": result.std,
                "eval/episodic_return_first_life": result.first_life_mean,
            },
        )
        log.info(
            "eval at step %d: return %.1f +- %.1f over %d games",
            self.state.env_steps,
            result.mean,
            result.std,
            len(result.episodes),
        )
        if result.mean > self.state.best_eval_return:
            self.state.best_eval_return = result.mean
            self.save("best.pt")
        return result

    # ---- persistence -----------------------------------------------------------------------
    def wall_seconds(self) -> float:
        """Training wall-clock of the run so far: its earlier processes and this one."""
        return self.state.wall_seconds + (time.perf_counter() - self._started)

    def write_final_evaluation(self, wall_seconds: float) -> None:
        """Write the final agent's evaluation as `final.eval.json`, in the format of
        `scripts/evaluate.py` (what `scripts/aggregate.py` reads)."""
        if self.last_eval is None:
            return
        c = self.cfg
        protocol = EvalProtocol(
            episodes=c.eval.episodes,
            epsilon=c.eval.epsilon,
            noop_max=c.env.noop_max,
            max_episode_frames=c.env.max_episode_frames,
            repeat_action_probability=c.env.repeat_action_probability,
            num_envs=c.eval.num_envs,
            seed=c.seed + EVAL_SEED_OFFSET,
        )
        figures = eval_figures(
            self.last_eval,
            c.env,
            protocol,
            source=str(self.checkpoint_dir / "last.pt"),
            seed=c.seed,
            env_steps=self.state.env_steps,
            training_hours=wall_seconds / 3600,
        )
        (self.run_dir / "final.eval.json").write_text(json.dumps(figures, indent=2) + "\n")

    def save(self, name: str, wall_seconds: float | None = None, with_replay: bool = True) -> None:
        """Write `checkpoints/<name>` atomically; `last.pt` keeps its predecessor as
        `last.prev.pt`, and is preceded by the replay snapshot when `checkpoint.save_replay`
        (and `with_replay`). A failed write (a full disk) raises CheckpointWriteError; the
        earlier files stay whole."""
        path = self.checkpoint_dir / name
        if wall_seconds is None:
            wall_seconds = self.wall_seconds()
        obs_shape, obs_dtype = observation_format(self.collector.envs)
        checkpoint = TrainingCheckpoint(
            config=config_dict(self.cfg),
            obs_shape=obs_shape,
            obs_dtype=str(obs_dtype),
            n_actions=self.agent.n_actions,
            agent=self.agent.state_dict(),
            rng={
                "numpy": self.rng.bit_generator.state,
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            state=replace(self.state, wall_seconds=wall_seconds),
        )
        writing = self.checkpoint_dir / REPLAY_SNAPSHOT
        try:
            if name == "last.pt" and self.cfg.checkpoint.save_replay and with_replay:
                save_arrays(
                    {**self.replay.state_dict(), "env_steps": np.array(self.state.env_steps)},
                    writing,
                )
            writing = path
            save_checkpoint(checkpoint, path, keep_previous=name == "last.pt")
        except OSError as e:
            kept = load_latest(self.checkpoint_dir)
            intact = (
                f"{kept[1].name} (step {kept[0].env_steps}) is intact"
                if kept
                else ("no earlier checkpoint exists")
            )
            raise CheckpointWriteError(
                f"Could not write {writing}: {e.strerror or e}; {intact}. Free "
                f"some disk space, then resume with resume={self.run_dir}."
            ) from None

    def restore(self) -> None:
        """Continue the run from `checkpoints/last.pt` (or `last.prev.pt` if the newer one is
        damaged) when the run directory has one: weights, optimizer, counters, schedules, RNG
        states, and the replay (with its priorities) when a matching snapshot was saved."""
        for leftover in self.checkpoint_dir.glob(".*.tmp"):  # a write cut short by a crash
            leftover.unlink()
        found = load_latest(self.checkpoint_dir)
        if found is None:
            return
        checkpoint, path = found
        check_same_run(checkpoint.config, config_dict(self.cfg), path)
        self.agent.load_state_dict(checkpoint.agent)
        self.rng.bit_generator.state = checkpoint.rng["numpy"]
        torch.set_rng_state(checkpoint.rng["torch"])
        if checkpoint.rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint.rng["cuda"])
        state = self.state = checkpoint.state
        if not (self.cfg.checkpoint.exact_resume and self.collector.synchronous):
            # The games in progress were not saved: new games, on new seeds.
            state.games_seed = int(self.rng.integers(0, MAX_SEED))
        saved_total = int(checkpoint.config["total_steps"])
        if saved_total != self.cfg.total_steps:  # re-plan the steps left, keep those taken
            done = run_progress(state.env_steps, saved_total, *state.schedule_origin)
            state.schedule_origin = (state.env_steps, done)
            if done >= 1.0 and self.cfg.agent.lr_schedule == LearningRateSchedule.linear:
                log.warning(
                    "agent.lr_schedule=linear reached 0 at the run's earlier "
                    "total_steps; the steps added learn nothing."
                )
        state.resumes.append(state.env_steps)
        log.info(
            "Resuming from %s at %d env steps (%d updates).", path, state.env_steps, state.updates
        )
        self.restore_replay()

    def restore_replay(self) -> None:
        """Load the replay snapshot if it is the checkpoint's; otherwise refill the replay for
        `agent.learning_starts` steps before learning again, and say so."""
        snapshot = self.checkpoint_dir / REPLAY_SNAPSHOT
        reason = "checkpoint.save_replay=false"
        if snapshot.exists():
            try:
                state = load_arrays(snapshot)
                if int(state.pop("env_steps")) != self.state.env_steps:
                    raise ValueError("it was written at another step than the checkpoint")
                self.replay.load_state_dict(state)
                log.info("Replay restored from %s (%d transitions).", snapshot, len(self.replay))
                return
            except (ConfigError, ValueError, KeyError) as e:
                reason = f"{snapshot} cannot be used ({e})"
        a = self.cfg.agent
        owed_now = updates_owed(
            self.state.env_steps, a.learning_starts, a.train_freq, a.gradient_steps
        )
        refilled = updates_owed(
            self.state.env_steps + a.learning_starts,
            a.learning_starts,
            a.train_freq,
            a.gradient_steps,
        )
        self.state.forgiven_updates += refilled - owed_now
        log.warning(
            "The replay was not restored (%s): refilling it for agent.learning_starts=%d env "
            "steps before learning resumes.",
            reason,
            a.learning_starts,
        )

    def summary(self, wall_seconds: float, stopped_by: str | None) -> dict:
        """The figures that `summary.json` holds."""
        result = self.last_eval
        return {
            "env": self.cfg.env.id,
            "env_steps": self.state.env_steps,
            "env_frames": self.state.env_steps
            * (self.cfg.env.frame_skip if self.cfg.env.kind == EnvKind.atari else 1),
            "episodes": self.state.episodes,
            "updates": self.state.updates,
            "wall_seconds": round(wall_seconds, 2),
            "steps_per_second": round(self.state.env_steps / max(wall_seconds, 1e-9), 1),
            "train_return_mean_last100": (
                float(np.mean(self.state.recent_returns)) if self.state.recent_returns else None
            ),
            "eval_return_mean": None if result is None else result.mean,
            "eval_return_std": None if result is None else result.std,
            "eval_return_first_life_mean": None if result is None else result.first_life_mean,
            "eval_returns": None if result is None else result.returns.tolist(),
            "eval_epsilon": self.cfg.eval.epsilon,
            "best_eval_return": None if result is None else self.state.best_eval_return,
            "interrupted": stopped_by is not None,
            "stopped_by": stopped_by,
            "resumes": self.state.resumes,
            # The run's whole config, so that a restarted suite knows this finished run by its
            # summary alone, after its checkpoints were deleted or never copied.
            "config": config_dict(self.cfg),
        }

    def close(self) -> None:
        """Release the environments."""
        self.collector.close()
        self.eval_envs.close()
