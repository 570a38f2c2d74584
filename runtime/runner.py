"""Closed-loop execution of a policy on a robot: the engine behind `rt-run`.

- `robot_options_for_policy(robot, io, options)`: what a robot must be told to serve the policy's inputs
  (`pusht-sim` observes the block keypoints for a camera-free policy that takes
  `observation.environment_state`).
- `check_policy_matches_robot(policy, spec)`: refuses a policy whose sidecar does not fit the robot, before
  anything runs: an input the robot cannot provide (a camera, `observation.environment_state`, ...) or one of
  another size, named; camera resolution, state and action names, rate.
- `run_sim(...)`: simulated robots. Each tick is one synchronous `Session.step` of the C++ core, then one
  `robot.command` that advances the simulation by one period of simulated time (10 Hz for PushT), so results
  do not depend on how busy the machine is.
- `run_realtime(...)`: real (or emulated) robots. The C++ `Loop` ticks on absolute deadlines in its own
  thread; this thread only moves observations in and commands out, and safe-stops the robot on a loop fault,
  a stale camera or a robot error.

Both return a `RunResult` with per-episode results, per-stage latency samples and counters; `summarize`
turns it into the JSON summary `rt-run --json` writes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from edgeact.runtime.config import RuntimeConfig
from edgeact.runtime.policy_io import ENV_STATE, STATE, PolicyIO, camera_feature
from edgeact.runtime.robots.base import EpisodeResult, Observation, Robot, RobotError, RobotSpec, SimRobot

log = logging.getLogger(__name__)

STAGES = ("pre", "infer", "ensemble", "post", "step")  # `step`: the whole Session.step / loop tick


class PolicyMismatchError(ValueError):
    """The policy's sidecar does not fit the robot; the message names the field."""


def _names(values: Any) -> list[str]:
    return [str(v) for v in (values or ())]


def robot_options_for_policy(robot: str, io: PolicyIO, options: dict[str, Any]) -> dict[str, Any]:
    """`options` plus what `robot` needs to provide the policy's inputs; options already set are kept.

    `pusht-sim` observes gym-pusht's `environment_state_agent_pos` (`observation="keypoints"`) for a policy
    without camera that takes `observation.environment_state`, else the camera (docs/rt-run.md).
    """
    if robot == "pusht-sim" and "observation" not in options:
        from edgeact.runtime.robots.pusht_sim import observation_for_inputs

        env_state = io.vector(ENV_STATE) is not None
        mode = observation_for_inputs(has_camera=bool(io.cameras), has_env_state=env_state)
        return {**options, "observation": mode}
    return options


def _input_problems(policy: Any, spec: RobotSpec) -> list[str]:
    """The policy's inputs the robot cannot provide, or provides with another size, each named."""
    problems = []
    for cam in policy.cameras:
        if cam.name not in spec.camera_names:
            problems.append(
                f"robot {spec.name} cannot provide input {camera_feature(cam.name)!r} (camera {cam.name!r}; "
                f"its cameras: {list(spec.camera_names)})"
            )
    robot_dims = {STATE: len(spec.state_names), **spec.vector_dims}
    for vec in policy.vectors:
        have = robot_dims.get(vec.feature, 0)
        if have == 0:
            provided = [f"{k} ({n})" for k, n in robot_dims.items() if n]
            problems.append(
                f"robot {spec.name} cannot provide input {vec.feature!r} ({vec.dim} values; it provides "
                f"{provided or 'no vector'})"
            )
        elif have != vec.dim:
            problems.append(f"input {vec.feature!r} has {vec.dim} values in the model, robot gives {have}")
    return problems


def check_policy_matches_robot(policy: Any, spec: RobotSpec, model: str = "policy") -> None:
    """Raise PolicyMismatchError unless inputs, resolutions, state/action names and rate agree."""
    problems = _input_problems(policy, spec)
    model_cams = {c.name: c for c in policy.cameras}
    if sorted(model_cams) != sorted(spec.camera_names):
        problems.append(f"camera names differ: model {sorted(model_cams)}, robot {sorted(spec.camera_names)}")
    for cam in spec.cameras:
        mc = model_cams.get(cam.name)
        if mc is None:
            continue
        if mc.channels != cam.channels:
            problems.append(f"camera {cam.name!r} channels differ: model {mc.channels}, robot {cam.channels}")
        if not _resizable(mc.height, mc.width, cam.height, cam.width):
            problems.append(
                f"camera {cam.name!r} resolution differs: model {mc.height}x{mc.width}, "
                f"robot {cam.height}x{cam.width} (only same-size or a downscale with the same aspect ratio)"
            )
    has_state = any(v.feature == STATE for v in policy.vectors)
    same_size = len(policy.state_names) == len(spec.state_names)  # a size difference is named above
    if has_state and same_size and _names(policy.state_names) != list(spec.state_names):
        problems.append(
            f"state_names differ: model {_names(policy.state_names)}, robot {list(spec.state_names)}"
        )
    robot_vectors = dict(spec.vectors)
    for vec in policy.vectors:
        names = robot_vectors.get(vec.feature)
        if names is not None and len(names) == vec.dim and tuple(names) != vec.names:
            # Datasets label these inconsistently (LeRobot's info.json may give none: export numbers them),
            # so only the size is binding; the difference is logged.
            log.warning(
                "%s element names differ: model %s, robot %s", vec.feature, list(vec.names), list(names)
            )
    if _names(policy.action_names) != list(spec.action_names):
        problems.append(
            f"action_names differ: model {_names(policy.action_names)}, robot {list(spec.action_names)}"
        )
    if not math.isclose(float(policy.fps), float(spec.fps), rel_tol=1e-9):
        problems.append(f"fps differs: model {policy.fps}, robot {spec.fps}")
    if problems:
        raise PolicyMismatchError(f"{model} does not fit robot {spec.name}: " + "; ".join(problems))


def _resizable(mh: int, mw: int, rh: int, rw: int) -> bool:
    if (mh, mw) == (rh, rw):
        return True
    same_aspect = abs(mh * rw - mw * rh) <= 0.01 * mh * rw
    return same_aspect and mh <= rh and mw <= rw


def execution_config(policy: Any, cfg: RuntimeConfig) -> Any:
    """The sidecar's execution block with the config's overrides (mode, m, n, async latency)."""
    base = policy.execution
    changes = cfg.execution_overrides()
    if changes.get("mode") not in (None, base.mode) and "n_action_steps" not in changes:
        changes["n_action_steps"] = None  # re-derived from chunk_size by ExecutionConfig
    changes["latency_ticks"] = cfg.latency_ticks
    return dataclasses.replace(base, **changes)


# PostParams takes finite values: a joint without a step limit gets one no command reaches
_NO_STEP_LIMIT = 1e30


def step_limits(spec: RobotSpec, cfg: RuntimeConfig) -> list[float] | None:
    """Per action, the smaller of the robot's `max_step` and the runtime config's (None: neither). The C++
    post-processor clamps to these and to the joint limits: the one clamp; bus arms only check
    (docs/rt-run.md, "One clamp")."""
    robot = spec.action_max_step
    if robot is None and cfg.max_step is None:
        return None
    n = len(spec.action_names)
    steps = np.full(n, math.inf) if robot is None else np.asarray(robot, dtype=np.float64)
    if cfg.max_step is not None:
        steps = np.minimum(steps, float(cfg.max_step))
    return [float(x) if math.isfinite(x) else _NO_STEP_LIMIT for x in steps]


def make_session(policy: Any, spec: RobotSpec, cfg: RuntimeConfig) -> Any:
    from edgeact.runtime.core import PostParams

    post = PostParams(lower=spec.action_low, upper=spec.action_high, max_delta=step_limits(spec, cfg))
    frame_shapes = {c.name: (c.height, c.width) for c in spec.cameras}
    return policy.session(execution=execution_config(policy, cfg), post=post, frame_shapes=frame_shapes)


# A step may use this share of the period: the rest is the loop's hand-over, the host's jitter and the bus.
STEP_BUDGET = 0.8
SPEED_RUNS = 5


class ModelTooSlowError(ValueError):
    """In ensemble mode the policy's step is slower than the robot's period; the message has the numbers."""


def measure_step_s(policy: Any, spec: RobotSpec, cfg: RuntimeConfig, runs: int = SPEED_RUNS) -> float:
    """Median wall time of one session step (pre, inference, ensemble, post) on a blank observation of the
    robot's shape, after the model's own warm-up runs: what every ensemble tick costs."""
    session = make_session(policy, spec, cfg)
    images = {c.name: np.zeros((c.height, c.width, c.channels), np.uint8) for c in spec.cameras}
    state = np.zeros(len(spec.state_names), np.float32)
    vectors = {key: np.zeros(dim, np.float32) for key, dim in spec.vector_dims.items()}
    samples = []
    for _ in range(max(1, runs)):
        session.reset(initial_command=None)
        t0 = time.perf_counter_ns()
        session.step(images, state, vectors)
        samples.append(time.perf_counter_ns() - t0)
    return float(np.median(samples)) / 1e9


def check_model_speed(policy: Any, spec: RobotSpec, cfg: RuntimeConfig) -> tuple[RuntimeConfig, float]:
    """(the config to run with, the measured step in s). Ensemble mode infers every tick: a step above
    `STEP_BUDGET` of the period would overrun every tick, and the loop's watchdog stops the robot after
    `max_consecutive_overruns`. Refuse with the numbers (`slow_model: refuse`, the default), switch to async
    (`slow_model: async`: inference in its own thread, a chunk used for n_action_steps ticks) or only warn."""
    step_s = measure_step_s(policy, spec, cfg)
    execution = execution_config(policy, cfg)
    period = 1.0 / float(spec.fps)
    budget_ms = period * STEP_BUDGET * 1e3
    numbers = (
        f"a step of {policy.artifact.model_path().name} takes {step_s * 1e3:.2f} ms (median of "
        f"{SPEED_RUNS} warm-up runs), the period of robot {spec.name} at {spec.fps:g} Hz is "
        f"{period * 1e3:.2f} ms (a step may use {STEP_BUDGET:.0%}: {budget_ms:.2f} ms)"
    )
    if step_s <= period * STEP_BUDGET:
        return cfg, step_s
    if execution.mode == "chunk":
        log.warning("%s: in chunk mode every inference tick overruns (once per chunk)", numbers)
    if execution.mode != "ensemble":
        return cfg, step_s
    if cfg.slow_model == "async":
        log.warning(
            "%s: ensemble mode would overrun every tick; running in async mode (slow_model: async)", numbers
        )
        return cfg.replace(mode="async"), step_s
    if cfg.slow_model == "warn":
        log.warning("%s: ensemble mode will overrun every tick (slow_model: warn)", numbers)
        return cfg, step_s
    raise ModelTooSlowError(
        f"{numbers}: in ensemble mode every tick would overrun and the loop would stop the robot after "
        f"{cfg.max_consecutive_overruns} overruns. Use --mode async (inference in its own thread, each chunk "
        f"used for n_action_steps ticks), or set slow_model: async in the runtime config to switch "
        "automatically, or lower the robot's fps (and retrain at that rate)"
    )


@dataclass
class RunResult:
    """What a run produced; `stage_ns` holds one int64 sample per tick and stage."""

    episodes: list[EpisodeResult] = field(default_factory=list)
    stop_reasons: list[str | None] = field(default_factory=list)
    stage_ns: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in STAGES})
    ticks: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    overruns: int = 0
    jitter_ns: list[int] = field(default_factory=list)  # real-time loop: wake-up lateness per tick
    first_action_at: float | None = None  # time.monotonic() of the first command sent to the robot
    wall_s: float = 0.0
    realtime: dict[str, Any] = field(
        default_factory=dict
    )  # real-time loop: the options asked for, and refusals

    def count(self, status: Any) -> None:
        self.statuses[status.name] = self.statuses.get(status.name, 0) + 1


def _initial_command(spec: RobotSpec, obs: Observation) -> np.ndarray | None:
    # Joint-space robots command what they measure: hold the present state until the first action.
    return obs.state.copy() if list(spec.state_names) == list(spec.action_names) else None


Hook = Callable[[SimRobot, Observation, np.ndarray], None]


def run_sim(
    policy: Any,
    robot: SimRobot,
    cfg: RuntimeConfig,
    *,
    on_step: Hook | None = None,
    on_episode_end: Callable[[int], None] | None = None,
) -> RunResult:
    """`cfg.episodes` episodes seeded `cfg.seed + e`; one synchronous core step per simulated tick."""
    spec = robot.spec
    session = make_session(policy, spec, cfg)
    result = RunResult()
    t_start = time.monotonic()
    for e in range(cfg.episodes):
        obs = robot.reset(seed=cfg.seed + e)
        session.reset(initial_command=_initial_command(spec, obs))
        while not robot.episode_done:
            t0 = time.perf_counter_ns()
            command, status = session.step(obs.images, obs.state, obs.vectors)
            step_ns = time.perf_counter_ns() - t0
            _add_timings(result, session.last_timings, step_ns)
            result.count(status)
            if status.is_fault or command is None:
                robot.safe_stop(
                    f"tick {session.tick}: {status.name}" + ("" if command is not None else ", no command")
                )
                break
            if on_step is not None:
                on_step(robot, obs, command)
            robot.command(command)
            if result.first_action_at is None:
                result.first_action_at = time.monotonic()
            obs = robot.observe()
        result.episodes.append(robot.episode_result())
        result.stop_reasons.append(getattr(robot, "stop_reason", None))
        if on_episode_end is not None:
            on_episode_end(e)
        log.info("episode %d: %s", e, result.episodes[-1])
    result.wall_s = time.monotonic() - t_start
    return result


def _add_timings(result: RunResult, timings: Any, step_ns: int) -> None:
    st = result.stage_ns
    st["pre"].append(int(timings.pre_ns))
    st["infer"].append(int(timings.infer_ns))
    st["ensemble"].append(int(timings.ensemble_ns))
    st["post"].append(int(timings.post_ns))
    # the C++ step, like the loop's `total`; the Python call around it is not runtime overhead
    st["step"].append(int(getattr(timings, "total_ns", 0) or step_ns))
    result.ticks += 1


def run_realtime(
    policy: Any,
    robot: Robot,
    cfg: RuntimeConfig,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[Robot, Observation, np.ndarray], None] | None = None,
) -> RunResult:
    """Drive a connected robot with the C++ loop until `cfg.duration_s`, `should_stop()` or a safe stop."""
    from edgeact.runtime.core import Loop, LoopParams, Status

    spec = robot.spec
    session = make_session(policy, spec, cfg)
    obs = robot.observe()
    session.reset(initial_command=_initial_command(spec, obs))
    params = LoopParams(
        rate_hz=float(spec.fps),
        stale_timeout_s=cfg.stale_timeout_s,
        max_consecutive_overruns=cfg.max_consecutive_overruns,
        stop_on_fault=cfg.stop_on_fault,
        realtime_priority=cfg.realtime_priority,
        lock_memory=cfg.lock_memory,
        cpu_affinity=cfg.cpu_affinity,
        spin_us=cfg.spin_us,
    )
    result = RunResult()
    reason: str | None = None
    t_start = time.monotonic()
    deadline = None if cfg.duration_s is None else t_start + cfg.duration_s
    last_seq = -1
    last_tick = -1  # the loop tick of the last command sent: the post-processor stepped once per tick since
    with Loop(session, params) as loop:
        while reason is None:
            if (deadline is not None and time.monotonic() >= deadline) or (should_stop and should_stop()):
                break
            try:
                obs = robot.observe()
                # the watchdog ages the observation by its oldest camera frame: a stalled camera goes stale
                stamp = min([obs.timestamp, *obs.image_timestamps.values()])
                loop.post_observation(obs.images, obs.state, int(stamp * 1e9), vectors=obs.vectors)
                cmd = loop.wait_command(after_seq=last_seq, timeout_s=2.0 / spec.fps)
                if cmd is None:
                    continue
                last_seq = cmd.seq
                result.count(cmd.status)
                if cmd.status == Status.SAFE_STOP:
                    # the loop's watchdog latched: consecutive overruns or a stale observation, named
                    reason = f"watchdog: {loop.stats().safe_stop_reason or 'latched, no reason given'}"
                elif cmd.values is not None:
                    if on_step is not None:
                        on_step(robot, obs, cmd.values)
                    robot.command_ticks(cmd.values, int(cmd.tick) - last_tick)
                    last_tick = int(cmd.tick)
                    if result.first_action_at is None:
                        result.first_action_at = time.monotonic()
            except RobotError as err:
                reason = f"robot error: {err}"
            except ValueError as err:  # ObservationError: a frame of the wrong size, a wrong state length
                reason = f"bad observation: {err}"
            except BaseException as err:  # Ctrl-C or a bug: stop the robot before leaving
                robot.safe_stop(f"{type(err).__name__}: {err}")
                raise
        stats = loop.stats()
        timings = loop.timings()
    if reason is not None:
        robot.safe_stop(reason)
    result.stop_reasons.append(reason)
    result.ticks = int(stats.ticks)
    result.overruns = int(stats.overruns)
    for stage in ("pre", "infer", "ensemble", "post"):
        result.stage_ns[stage] = timings[stage].astype(np.int64).tolist()
    result.stage_ns["step"] = timings["total"].astype(np.int64).tolist()
    result.jitter_ns = timings["lateness"].astype(np.int64).tolist()
    result.realtime = {
        "rate_hz": params.rate_hz,
        "priority": params.realtime_priority,
        "lock_memory": params.lock_memory,
        "cpu_affinity": list(params.cpu_affinity or []),
        "spin_us": params.spin_us,
        "refused": list(stats.realtime_warnings),
    }
    result.wall_s = time.monotonic() - t_start
    return result


def percentiles_us(samples_ns: Any) -> dict[str, float]:
    """p50 / p99 / max / mean in microseconds (NaN when there are no samples)."""
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e3
    if arr.size == 0:
        return {"p50_us": math.nan, "p99_us": math.nan, "max_us": math.nan, "mean_us": math.nan, "n": 0}
    return {
        "p50_us": float(np.percentile(arr, 50)),
        "p99_us": float(np.percentile(arr, 99)),
        "max_us": float(arr.max()),
        "mean_us": float(arr.mean()),
        "n": int(arr.size),
    }


def latency_stats(result: RunResult) -> dict[str, dict[str, float]]:
    """Per-stage statistics, plus `overhead` = step - infer (the runtime's own cost outside the model)."""
    out = {stage: percentiles_us(result.stage_ns[stage]) for stage in STAGES}
    step = np.asarray(result.stage_ns["step"], dtype=np.int64)
    infer = np.asarray(result.stage_ns["infer"], dtype=np.int64)
    if step.size == infer.size:
        out["overhead"] = percentiles_us(step - infer)
    if result.jitter_ns:
        out["jitter"] = percentiles_us(np.abs(np.asarray(result.jitter_ns)))
    return out


def format_latency_table(stats: dict[str, dict[str, float]], title: str = "latency") -> str:
    """A fixed-width table for people: one row per stage, microseconds."""
    lines = [f"{title:<10} {'p50 us':>10} {'p99 us':>10} {'max us':>10} {'mean us':>10} {'n':>7}"]
    for stage, s in stats.items():
        lines.append(
            f"{stage:<10} {s['p50_us']:>10.1f} {s['p99_us']:>10.1f} {s['max_us']:>10.1f} "
            f"{s['mean_us']:>10.1f} {s['n']:>7d}"
        )
    return "\n".join(lines)
