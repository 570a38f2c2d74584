"""`RuntimeConfig`: everything `rt-run` needs besides the policy artifact, with YAML overrides.

Defaults live here; `configs/runtime/<name>.yaml` (shipped in the package) or any YAML file overrides
them (`load_runtime_config`), and `rt-run` flags override both. Execution-mode fields left at None take their
value from the policy's sidecar `execution` block. YAML is read with `yaml.safe_load`; unknown keys are
refused by name.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "runtime"
MODES = ("ensemble", "chunk", "async")
SLOW_MODEL = ("refuse", "async", "warn")  # what rt-run does with a model slower than the robot's period
BACKENDS = ("auto", "onnxruntime", "tensorrt")


class RuntimeConfigError(ValueError):
    """A runtime config file or value is invalid; the message names the file and field."""


def _installed_config_dir() -> Path:
    """`configs/runtime` inside the installed `edgeact.configs` package (or the source tree)."""
    try:
        import edgeact.configs as configs_pkg

        return Path(configs_pkg.__file__).resolve().parent / "runtime"
    except ImportError:  # pragma: no cover - only when the package layout is broken
        return CONFIG_DIR


@dataclass
class RuntimeConfig:
    """One `rt-run` invocation. Fields left None are filled from the sidecar or the robot."""

    robot: str = "pusht-sim"
    robot_options: dict[str, Any] = field(default_factory=dict)  # passed to the robot's factory
    episodes: int = 50  # simulated robots: episodes to run
    seed: int = 0  # episode e is reset with seed + e
    max_episode_steps: int | None = None  # simulated robots: None keeps the robot's own limit
    duration_s: float | None = None  # real robots: stop after this long (None: until Ctrl-C)
    # Execution (None: the sidecar's `execution` block)
    mode: str | None = None
    temporal_ensemble_coeff: float | None = None
    n_action_steps: int | None = None
    latency_ticks: int = 0  # async on simulated robots: ticks an inference takes, in simulated time
    # Backend
    backend: str = "auto"
    intra_op_threads: int = 1
    warmup_runs: int = 3
    # The per-tick step limit on top of the robot's own (`max_step` in the robot YAML), robot units; the
    # smaller one per joint is what the post-processor clamps to (None: the robot's). Formerly max_delta.
    max_step: float | None = None
    # Real-time loop (real robots)
    stale_timeout_s: float = 0.5
    max_consecutive_overruns: int = 10
    realtime_priority: int = 0
    lock_memory: bool = False
    cpu_affinity: list[int] | None = None
    spin_us: float = 200.0  # LoopParams.spin_us: wake-up lateness below the OS timer's for 1 % CPU at 50 Hz
    stop_on_fault: bool = True
    # Ensemble mode infers every tick: a step slower than the period overruns every tick. Measured before the
    # loop starts (docs/rt-run.md, "Model speed"): refuse, switch to async, or only warn.
    slow_model: str = "refuse"

    def __post_init__(self) -> None:
        _check(isinstance(self.robot, str) and self.robot != "", "robot", self.robot, "a robot name")
        _check(isinstance(self.robot_options, dict), "robot_options", self.robot_options, "a mapping")
        _check(_is_int(self.episodes) and self.episodes >= 1, "episodes", self.episodes, "an int >= 1")
        _check(_is_int(self.seed) and self.seed >= 0, "seed", self.seed, "an int >= 0")
        if self.max_episode_steps is not None:
            ok = _is_int(self.max_episode_steps) and self.max_episode_steps >= 1
            _check(ok, "max_episode_steps", self.max_episode_steps, "an int >= 1 or null")
        if self.duration_s is not None:
            _check(_positive(self.duration_s), "duration_s", self.duration_s, "a positive number or null")
        _check(self.mode is None or self.mode in MODES, "mode", self.mode, f"one of {MODES} or null")
        if self.temporal_ensemble_coeff is not None:
            ok = isinstance(self.temporal_ensemble_coeff, (int, float)) and math.isfinite(
                self.temporal_ensemble_coeff
            )
            _check(ok, "temporal_ensemble_coeff", self.temporal_ensemble_coeff, "a finite number or null")
        if self.n_action_steps is not None:
            ok = _is_int(self.n_action_steps) and self.n_action_steps >= 1
            _check(ok, "n_action_steps", self.n_action_steps, "an int >= 1 or null")
        _check(
            _is_int(self.latency_ticks) and self.latency_ticks >= 0,
            "latency_ticks",
            self.latency_ticks,
            ">= 0",
        )
        _check(self.backend in BACKENDS, "backend", self.backend, f"one of {BACKENDS}")
        ok = _is_int(self.intra_op_threads) and self.intra_op_threads >= 1
        _check(ok, "intra_op_threads", self.intra_op_threads, "an int >= 1")
        _check(
            _is_int(self.warmup_runs) and self.warmup_runs >= 0,
            "warmup_runs",
            self.warmup_runs,
            "an int >= 0",
        )
        if self.max_step is not None:
            _check(_positive(self.max_step), "max_step", self.max_step, "a positive number or null")
        _check(_positive(self.stale_timeout_s), "stale_timeout_s", self.stale_timeout_s, "a positive number")
        ok = _is_int(self.max_consecutive_overruns) and self.max_consecutive_overruns >= 1
        _check(ok, "max_consecutive_overruns", self.max_consecutive_overruns, "an int >= 1")
        ok = _is_int(self.realtime_priority) and 0 <= self.realtime_priority <= 99
        _check(ok, "realtime_priority", self.realtime_priority, "an int in [0, 99]")
        if self.cpu_affinity is not None:
            ok = isinstance(self.cpu_affinity, list) and all(_is_int(c) and c >= 0 for c in self.cpu_affinity)
            _check(ok, "cpu_affinity", self.cpu_affinity, "a list of CPU indices or null")
        ok = (
            isinstance(self.spin_us, (int, float))
            and not isinstance(self.spin_us, bool)
            and self.spin_us >= 0
        )
        _check(ok, "spin_us", self.spin_us, "a number of microseconds >= 0")
        _check(self.slow_model in SLOW_MODEL, "slow_model", self.slow_model, f"one of {SLOW_MODEL}")

    def execution_overrides(self) -> dict[str, Any]:
        """The execution fields set here (not None), in the sidecar's `execution` vocabulary."""
        out: dict[str, Any] = {}
        for key in ("mode", "temporal_ensemble_coeff", "n_action_steps"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def replace(self, **changes: Any) -> RuntimeConfig:
        """A copy with `changes` applied (validated again); None values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise RuntimeConfigError(f"RuntimeConfig.{name} must be {expected}, got {value!r}")


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path as given, or the shipped `configs/runtime/<name>.yaml`."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise RuntimeConfigError(f"runtime config {path} does not exist")
        return path
    shipped = _installed_config_dir() / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = sorted(p.stem for p in _installed_config_dir().glob("*.yaml"))
        raise RuntimeConfigError(f"no runtime config named {name_or_path!r}; shipped: {names}")
    return shipped


def load_runtime_config(name_or_path: str | Path | None = None, **overrides: Any) -> RuntimeConfig:
    """Defaults, then the YAML file (if any), then `overrides` (None values ignored)."""
    values: dict[str, Any] = {}
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise RuntimeConfigError(f"cannot read runtime config {path}: {err}") from err
        if not isinstance(loaded, dict):
            raise RuntimeConfigError(f"runtime config {path} must be a mapping, got {type(loaded).__name__}")
        if "max_delta" in loaded:  # the old name of max_step (one step limit, one name: issue 11)
            warnings.warn(
                f"runtime config {path}: max_delta is deprecated, use max_step",
                DeprecationWarning,
                stacklevel=2,
            )
            if "max_step" in loaded:
                raise RuntimeConfigError(
                    f"runtime config {path}: give max_step only (max_delta is its old name)"
                )
            loaded["max_step"] = loaded.pop("max_delta")
        known = {f.name for f in dataclasses.fields(RuntimeConfig)}
        unknown = sorted(set(loaded) - known)
        if unknown:
            raise RuntimeConfigError(f"runtime config {path}: unknown field(s) {unknown}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RuntimeConfig(**values)
    except RuntimeConfigError as err:
        where = f" (from {name_or_path})" if name_or_path is not None else ""
        raise RuntimeConfigError(f"{err}{where}") from err
