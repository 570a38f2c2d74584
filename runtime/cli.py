"""`rt-run`: run an exported policy on a robot through the C++ runtime and report what happened.

    rt-run --robot pusht-sim --model policy.onnx --episodes 50 --seed 0 [--json out.json] [--video out.mp4]
           [--record rollouts/] [--mode ensemble|chunk|async] [--ensemble-coeff M] [--n-action-steps N]

The backend follows the model file (`.onnx` -> ONNX Runtime, `.engine` -> TensorRT). A policy whose sidecar
does not fit the robot is refused before anything runs, naming the input or field: an input the robot cannot
provide (a camera, `observation.environment_state`) or provides with another size, camera names and
resolution, state/action names, rate. `pusht-sim` serves image and keypoint policies: without a camera and
with `observation.environment_state`, it observes the block keypoints (`--robot-option observation=...`
overrides).
Simulated robots run one synchronous core step per simulated tick and report PushT's success rate and
average max overlap; real robots run the real-time C++ loop until `--duration` or Ctrl-C. This module imports
numpy, PyYAML, onnxruntime (through the core) and the robot's own dependencies, never torch; `--record`
additionally imports the torch-free dataset writer of `edgeact.train.data`.

Exit codes: 0 done, 2 bad input (model, sidecar, config, robot mismatch), 3 the robot was safe-stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from edgeact.runtime import runner
from edgeact.runtime.config import RuntimeConfigError, load_runtime_config, resolve_config_path
from edgeact.runtime.policy_io import STATE
from edgeact.runtime.robots import RobotError, SimRobot, available_robots, is_robot_file, make_robot
from edgeact.runtime.robots.base import NameMappedRobot, parse_name_map

log = logging.getLogger("edgeact.runtime.cli")


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc), to measure time to first action from exec."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 (starttime) counted from 1, after pid and comm
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def rss_mb() -> dict[str, float]:
    """Current and peak resident set size of this process, MiB (Linux /proc)."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--robot-option takes KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rt-run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--robot",
        help=f"robot name ({', '.join(available_robots())}) or a robot YAML file (bus: dynamixel|canopen|"
        "feetech); default from the config",
    )
    p.add_argument(
        "--model", required=True, type=Path, help="policy.onnx or policy.engine (policy.json beside)"
    )
    p.add_argument("--config", help="runtime config: a name under configs/runtime or a YAML path")
    p.add_argument("--robot-option", action="append", type=_parse_option, default=[], metavar="KEY=VALUE")
    p.add_argument("--episodes", type=int, help="simulated robots: episodes to run (default 50)")
    p.add_argument("--seed", type=int, help="simulated robots: episode e uses seed + e (default 0)")
    p.add_argument("--max-episode-steps", type=int, help="simulated robots: ticks per episode at most")
    p.add_argument("--duration", type=float, help="real robots: seconds to run (default: until Ctrl-C)")
    g = p.add_argument_group("real robots (widowx, can-arm)")
    g.add_argument("--port", help="serial device of the Dynamixel bus (e.g. /dev/ttyUSB0, any pty)")
    g.add_argument("--camera", help="camera source: /dev/videoN, a video file, synthetic; or NAME=SRC,...")
    g.add_argument("--can-interface", help="python-can interface: socketcan, slcan, pcan, udp_multicast...")
    g.add_argument("--can-channel", help="python-can channel (can0, a multicast group, ...)")
    g.add_argument(
        "--can-option",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="any other python-can bus argument, repeatable (fd=true, data_bitrate=2000000, port=43114)",
    )
    g.add_argument("--dry-run", action="store_true", help="drive byte-level emulators instead of hardware")
    g.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="POLICY=ROBOT,...",
        help="policy camera/state/action name -> the robot's (joint_0=waist,top=cam_high), over its name_map",
    )
    g = p.add_argument_group("execution (defaults from the policy's sidecar)")
    g.add_argument("--mode", choices=("ensemble", "chunk", "async"))
    g.add_argument("--ensemble-coeff", type=float, help="ensemble: m in w_i = exp(-m i)")
    g.add_argument("--n-action-steps", type=int, help="chunk/async: ticks executed from each chunk")
    g.add_argument("--latency-ticks", type=int, help="async on simulated robots: inference delay in ticks")
    g = p.add_argument_group("runtime")
    g.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"))
    g.add_argument("--threads", type=int, help="inference intra-op threads (default 1)")
    g.add_argument(
        "--max-step",
        type=float,
        help="largest change of any joint per tick (robot units), on top of the robot's",
    )
    g.add_argument("--max-delta", type=float, help=argparse.SUPPRESS)  # the old name of --max-step
    g.add_argument("--realtime-priority", type=int, help="SCHED_FIFO priority for the loop (0: off)")
    g.add_argument("--lock-memory", action="store_true", default=None, help="mlockall the process")
    g.add_argument("--spin-us", type=float, help="busy-wait this long before each tick's deadline (0: off)")
    g = p.add_argument_group("outputs")
    g.add_argument("--json", type=Path, help="write the summary here")
    g.add_argument("--video", type=Path, help="simulated robots: write an mp4 of the rollouts")
    g.add_argument("--record", type=Path, help="save the rollouts as a LeRobot v3.0 dataset in this folder")
    g.add_argument("--task", default="", help="task text stored with recorded episodes")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _config_from_args(args: argparse.Namespace) -> Any:
    if args.max_delta is not None:
        print("rt-run: warning: --max-delta is deprecated, use --max-step", file=sys.stderr)
        args.max_step = args.max_step if args.max_step is not None else args.max_delta
    config = args.config
    if config is None and args.robot is not None and not is_robot_file(args.robot):
        try:  # a shipped configs/runtime/<robot>.yaml, when there is one
            resolve_config_path(args.robot)
            config = args.robot
        except RuntimeConfigError:
            config = None
    cfg = load_runtime_config(
        config,
        robot=args.robot,
        episodes=args.episodes,
        seed=args.seed,
        max_episode_steps=args.max_episode_steps,
        duration_s=args.duration,
        mode=args.mode,
        temporal_ensemble_coeff=args.ensemble_coeff,
        n_action_steps=args.n_action_steps,
        latency_ticks=args.latency_ticks,
        backend=args.backend,
        intra_op_threads=args.threads,
        max_step=args.max_step,
        realtime_priority=args.realtime_priority,
        lock_memory=args.lock_memory,
        spin_us=args.spin_us,
    )
    if args.robot_option:
        cfg = cfg.replace(robot_options={**cfg.robot_options, **dict(args.robot_option)})
    return cfg


def _options_for_policy(robot: str, model: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The robot options the policy's inputs call for (`runner.robot_options_for_policy`). A sidecar that
    cannot be read changes nothing here: `Policy.load` reports it."""
    from edgeact.runtime.artifact import ArtifactError, load_artifact

    try:
        io = load_artifact(model).io
    except (ArtifactError, OSError):
        return options
    return runner.robot_options_for_policy(robot, io, options)


def _map_names(robot: Any, policy: Any, flags: list[str]) -> Any:
    """`robot` under the policy's names when the robot YAML's `name_map` or `--map` has entries (the flag's
    win per name); NameMapError (a RobotError) names an unmapped or ambiguous name."""
    name_map = dict(getattr(getattr(robot, "config", None), "name_map", None) or {})
    for text in flags:
        name_map.update(parse_name_map(text))
    if not name_map:
        return robot
    if isinstance(robot, SimRobot):
        raise RobotError("--map / name_map is for real robots")
    takes_state = any(v.feature == STATE for v in policy.vectors)
    return NameMappedRobot(
        robot,
        name_map,
        cameras=[c.name for c in policy.cameras],
        state_names=[str(n) for n in policy.state_names or ()] if takes_state else [],
        action_names=[str(n) for n in policy.action_names],
    )


def _fail(message: str, code: int = 2) -> int:
    print(f"rt-run: error: {message}", file=sys.stderr)
    return code


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    t_main = time.monotonic()
    age_at_main = process_age_s()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if args.model.suffix == ".json":  # the sidecar: its hash would be checked against itself (issue 12)
        return _fail(
            f"{args.model}: --model takes the model file ({args.model.stem}.onnx or .engine), not its sidecar"
        )
    try:
        cfg = _config_from_args(args)
    except (RuntimeConfigError, ValueError) as err:
        return _fail(str(err))
    options = dict(cfg.robot_options)
    for key in ("port", "camera", "can_interface", "can_channel", "dry_run"):  # real-robot flags
        if getattr(args, key) not in (None, False):
            options[key] = getattr(args, key)
    if args.can_option:  # on top of the robot YAML's can_options
        options["can_options"] = {**options.get("can_options", {}), **dict(args.can_option)}
    if cfg.max_episode_steps is not None:
        options.setdefault("max_episode_steps", cfg.max_episode_steps)
    options = _options_for_policy(cfg.robot, args.model, options)
    try:
        robot = make_robot(cfg.robot, **options)
    except (RobotError, TypeError, ValueError) as err:
        return _fail(f"robot {cfg.robot}: {err}")

    from edgeact.runtime.core import CoreError, Policy, PolicyParams

    t_load = time.monotonic()
    try:
        policy = Policy.load(
            args.model,
            PolicyParams(
                backend=cfg.backend, intra_op_threads=cfg.intra_op_threads, warmup_runs=cfg.warmup_runs
            ),
        )
        robot = _map_names(robot, policy, args.map)
        runner.check_policy_matches_robot(policy, robot.spec, str(args.model))
        step_s = None
        if not isinstance(robot, SimRobot):  # before torque-on: a model too slow for the rate never moves it
            cfg, step_s = runner.check_model_speed(policy, robot.spec, cfg)
    except (CoreError, runner.PolicyMismatchError, runner.ModelTooSlowError, RobotError, OSError) as err:
        return _fail(str(err))
    load_s = time.monotonic() - t_load
    try:
        with robot:
            result, episode_stats = _run(policy, robot, cfg, args)
    except (RobotError, ValueError) as err:
        return _fail(f"{cfg.robot}: {err}", code=3)
    summary = _summary(policy, robot, cfg, args, result, episode_stats, load_s)
    ttfa = None
    if result.first_action_at is not None and age_at_main is not None:
        ttfa = age_at_main + (result.first_action_at - t_main)
    summary["time_to_first_action_s"] = ttfa
    if step_s is not None:
        summary["warmup_step_ms"] = step_s * 1e3
    summary.update(rss_mb())
    _print_summary(summary)
    if args.json is not None:
        write_json_atomic(args.json, summary)
    stopped = any(r is not None for r in result.stop_reasons) and not isinstance(robot, SimRobot)
    return 3 if stopped else 0


def _run(policy: Any, robot: Any, cfg: Any, args: argparse.Namespace) -> tuple[runner.RunResult, Any]:
    from edgeact.runtime.record import RolloutRecorder, VideoWriter

    recorder = RolloutRecorder(args.record, robot.spec, task=args.task) if args.record else None
    video = VideoWriter(args.video, robot.spec.fps) if args.video else None
    is_sim = isinstance(robot, SimRobot)
    if video is not None and not is_sim:
        return _abort_outputs(recorder, video, "--video is for simulated robots (use --record on real ones)")

    def on_step(rbt: Any, obs: Any, command: np.ndarray) -> None:
        if recorder is not None:
            recorder.add(obs, command)
        if video is not None:
            video.add(rbt.render())

    hook = on_step if (recorder or video) else None
    try:
        if is_sim:
            end = (lambda _e: recorder.end_episode()) if recorder is not None else None
            result = runner.run_sim(policy, robot, cfg, on_step=hook, on_episode_end=end)
            from edgeact.runtime.robots.pusht_sim import pusht_metrics

            stats = pusht_metrics(result.episodes)
        else:
            stop: dict[str, Any] = {"flag": False}

            def on_signal(signum: int, _frame: Any) -> None:
                stop.update(flag=True, reason="sigint" if signum == signal.SIGINT else "sigterm")

            previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                result = runner.run_realtime(
                    policy, robot, cfg, should_stop=lambda: stop["flag"], on_step=hook
                )
            finally:  # main() may be called again in this process (tests): leave the handlers as found
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            if stop["flag"]:
                robot.safe_stop(stop["reason"])  # hold, then torque off; the signal is the logged reason
            if recorder is not None:
                recorder.end_episode()
            stats = None
    except BaseException:
        _abort_outputs(recorder, video, None)
        raise
    if recorder is not None:
        recorder.close()
    if video is not None:
        video.close()
    return result, stats


def _abort_outputs(recorder: Any, video: Any, message: str | None) -> Any:
    if recorder is not None:
        recorder.abort()
    if video is not None:
        video.abort()
    if message is not None:
        raise ValueError(message)
    return None


def _summary(policy, robot, cfg, args, result, stats, load_s) -> dict[str, Any]:
    execution = runner.execution_config(policy, cfg)
    out: dict[str, Any] = {
        "robot": cfg.robot,
        "model": str(args.model),
        "backend": policy.backend,
        "inputs": policy.artifact.io.input_names,
        "execution": {
            "mode": execution.mode,
            "temporal_ensemble_coeff": execution.temporal_ensemble_coeff,
            "n_action_steps": execution.n_action_steps,
            "latency_ticks": execution.latency_ticks,
        },
        "seed": cfg.seed,
        "ticks": result.ticks,
        "statuses": result.statuses,
        "overruns": result.overruns,
        "safe_stops": [r for r in result.stop_reasons if r is not None],
        "latency": runner.latency_stats(result),
        "policy_load_s": load_s,
        "wall_s": result.wall_s,
    }
    if result.realtime:
        out["realtime"] = result.realtime
    record = getattr(robot, "stop_record", None)  # bus arms: how the bridge stopped the motors, and why
    if record is not None:
        out["stop"] = {
            "reason": record.reason.value,
            "detail": record.detail,
            "tick": record.tick,
            "fault": record.is_fault,
        }
    if stats is not None:
        out.update(stats.as_dict())
        out["episodes"] = [
            {
                "seed": ep.seed,
                "steps": ep.steps,
                "success": ep.success,
                "max_reward": ep.max_reward,
                "stop": r,
            }
            for ep, r in zip(result.episodes, result.stop_reasons, strict=True)
        ]
    return out


def _print_summary(s: dict[str, Any]) -> None:
    ex = s["execution"]
    print(f"robot {s['robot']}  model {s['model']}  backend {s['backend']}  mode {ex['mode']}")
    if "success_rate" in s:
        print(
            f"episodes {s['n_episodes']}  success rate {s['success_rate']:.3f}  "
            f"avg max overlap {s['avg_max_overlap']:.3f}"
        )
    print(runner.format_latency_table(s["latency"]))
    ttfa = s.get("time_to_first_action_s")
    ttfa_text = "n/a" if ttfa is None else f"{ttfa:.2f} s"
    print(
        f"ticks {s['ticks']}  overruns {s['overruns']}  safe stops {len(s['safe_stops'])}  "
        f"peak RSS {s.get('peak_rss_mb', float('nan')):.0f} MiB  time to first action {ttfa_text}"
    )
    for reason in s["safe_stops"][:5]:
        print(f"  safe stop: {reason}")
    stop = s.get("stop")
    if stop is not None and stop["fault"]:
        print(f"  motors stopped ({stop['reason']}) at bus tick {stop['tick']}: {stop['detail']}")


if __name__ == "__main__":
    sys.exit(main())
