"""The training run's configuration: `TrainConfig` (with the policy's `ACTConfig` and an `EvalConfig` nested).

Defaults live in the dataclasses; a YAML file (`configs/train/*.yaml`, read with `yaml.safe_load`) holds
overrides only; command-line flags override the YAML. Every field is validated in `__post_init__` with a
message naming the field and the value. `config_to_dict`/`config_from_dict` give the JSON form stored in
checkpoints.

    cfg = load_train_config(dataset="pusht", overrides=["policy.chunk_size=50", "steps=1000"])
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from edgeact.train.config import ACTConfig


class TrainError(Exception):
    """Base of the errors raised by training, checkpoints and evaluation."""


class ConfigError(TrainError, ValueError):
    """A configuration file, field or override is invalid."""


EXECUTION_MODES = ("ensemble", "chunk")
SCHEDULERS = ("constant", "cosine")


def _check(cond: bool, name: str, value: Any, want: str) -> None:
    if not cond:
        raise ConfigError(f"{name}={value!r}: {want}")


@dataclass
class EvalConfig:
    """Closed-loop evaluation in simulation (`eval-act`, and `eval_every` during training)."""

    env: str = "pusht"
    episodes: int = 50
    seed: int = 100_000
    # How predicted chunks become actions (docs/design.md "Action execution", edgeact.runtime.ensemble_ref).
    # None = the policy's own `execution_mode`, `temporal_ensemble_coeff`, `n_action_steps` (ACTConfig).
    mode: str | None = None
    temporal_ensemble_coeff: float | None = None
    n_action_steps: int | None = None
    max_steps: int = 300  # gym-pusht's episode limit (LeRobot's PushT env: episode_length 300)
    video_episodes: int = 0  # record this many episodes as mp4 next to the results
    video_dir: str | None = None

    def __post_init__(self) -> None:
        _check(self.env == "pusht", "eval.env", self.env, "only 'pusht' is supported")
        _check(self.episodes >= 1, "eval.episodes", self.episodes, "must be >= 1")
        _check(self.seed >= 0, "eval.seed", self.seed, "must be >= 0")
        _check(
            self.mode is None or self.mode in EXECUTION_MODES,
            "eval.mode",
            self.mode,
            f"must be one of {EXECUTION_MODES} or null",
        )
        m = self.temporal_ensemble_coeff
        _check(
            m is None or (math.isfinite(m) and m >= 0),
            "eval.temporal_ensemble_coeff",
            self.temporal_ensemble_coeff,
            "must be a finite number >= 0 or null",
        )
        _check(
            self.n_action_steps is None or self.n_action_steps >= 1,
            "eval.n_action_steps",
            self.n_action_steps,
            "must be >= 1 or null",
        )
        _check(self.max_steps >= 1, "eval.max_steps", self.max_steps, "must be >= 1")
        _check(self.video_episodes >= 0, "eval.video_episodes", self.video_episodes, "must be >= 0")


@dataclass
class TrainConfig:
    """One training run. Optimizer defaults follow ACT (docs/model.md): AdamW, lr 1e-5, wd 1e-4, B 8."""

    dataset: str = "pusht"  # a name (`pusht`), a LeRobot repo id, or a dataset folder
    episodes: list[int] | None = None  # train on these episodes only (None = all)
    cameras: list[str] | None = None  # use these cameras only (None = every camera of the dataset)
    steps: int = 100_000
    batch_size: int = 8  # per process; the global batch under DDP is batch_size x world size
    lr: float = 1e-5
    lr_backbone: float = 1e-5
    weight_decay: float = 1e-4
    grad_clip: float = 10.0  # max global grad norm; 0 disables clipping
    scheduler: str = "constant"  # constant | cosine (after warmup, down to min_lr_ratio * lr)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    seed: int = 1000
    device: str = "cpu"  # cpu | cuda | cuda:N
    # bf16 autocast for the forward pass (weights, gradients and AdamW stay fp32): 1.5x faster per step on an
    # AVX-512/AMX CPU with the same loss curve (docs/training.md). channels-last only helps in fp32 there.
    bf16: bool = True
    channels_last: bool = False
    frame_cache: bool = True  # decoded frames from the dataset's frame cache
    num_threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    output: str = "outputs/train"
    save_every: int = 10_000
    keep_checkpoints: int = 0  # keep only the newest N step folders; 0 keeps all
    log_every: int = 100
    eval_every: int = 0  # closed-loop evaluation every N steps (rank 0); 0 disables
    progress: bool = True
    policy: ACTConfig = field(default_factory=ACTConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check(bool(self.dataset), "dataset", self.dataset, "must name a dataset")
        for name in ("steps", "batch_size", "log_every", "save_every"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        for name in ("warmup_steps", "eval_every", "seed", "num_threads", "keep_checkpoints"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")
        for name in ("lr", "lr_backbone"):
            v = getattr(self, name)
            _check(math.isfinite(v) and v > 0, name, v, "must be a finite number > 0")
        for name in ("weight_decay", "grad_clip"):
            v = getattr(self, name)
            _check(math.isfinite(v) and v >= 0, name, v, "must be a finite number >= 0")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        _check(self.scheduler in SCHEDULERS, "scheduler", self.scheduler, f"must be one of {SCHEDULERS}")
        _check(
            self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:"),
            "device",
            self.device,
            "must be 'cpu', 'cuda' or 'cuda:N'",
        )
        _check(
            self.episodes is None or len(self.episodes) > 0, "episodes", self.episodes, "must not be empty"
        )
        _check(self.cameras is None or len(self.cameras) > 0, "cameras", self.cameras, "must not be empty")


# Fields that may differ between a checkpoint's config and a resumed run without changing the math.
RESUMABLE_FIELDS = frozenset(
    {"steps", "device", "output", "save_every", "keep_checkpoints", "log_every", "eval_every", "progress",
     "num_threads", "frame_cache", "eval"}
)  # fmt: skip


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert a YAML/CLI value to a field's annotated type (ints for floats, '1e-5' strings)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], name) if len(args) == 1 else value
    if hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError as err:
            raise ConfigError(f"{name}={value!r}: expected a number") from err
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{name}={value!r}: expected true or false")
    if hint in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{name}={value!r}: expected a number")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{name}={value!r}: expected a string")
    if origin in (list, tuple) and value is not None:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r}: expected a list")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(v, item, f"{name}[{i}]") if item is not Any else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    return value


def build_dataclass(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build `cls` from a (nested) dict, refusing unknown keys and naming the offending field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(where + k for k in unknown)}; known: {', '.join(known)}"
        )
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = build_dataclass(hint, value, f"{where}{key}.")
        else:
            value = _coerce(value, hint, where + key)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The JSON-safe nested dict of a config dataclass (tuples become lists)."""
    return json_safe(dataclasses.asdict(cfg))


def json_safe(obj: Any) -> Any:
    """Nested dicts/lists/tuples/arrays/tensors -> plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    return obj


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return build_dataclass(TrainConfig, data)


def _deep_update(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    for key, value in upd.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def parse_override(text: str) -> tuple[list[str], Any]:
    """`policy.chunk_size=50` -> (["policy", "chunk_size"], 50); the value is parsed as YAML."""
    key, sep, raw = text.removeprefix("--").partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. policy.chunk_size=50")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {err}") from err
    return key.replace("-", "_").split("."), value


def overrides_to_dict(overrides: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        node[path[-1]] = value
    return out


def default_config_file(dataset: str) -> Path | None:
    """`configs/train/act_<dataset>.yaml` shipped with edgeact, for a short dataset name such as `pusht`."""
    name = dataset.rsplit("/", 1)[-1].lower()
    if not name.replace("_", "").replace("-", "").isalnum():
        return None
    res = importlib.resources.files("edgeact.configs").joinpath("train", f"act_{name}.yaml")
    return Path(str(res)) if res.is_file() else None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config fields")
    return data


def load_train_config(
    *,
    config_file: str | Path | None = None,
    dataset: str | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults < `base` (e.g. a checkpoint's config) < YAML file < overrides (CLI).

    Without `config_file`, the shipped `configs/train/act_<dataset>.yaml` is used when one exists.
    """
    # A deep copy: merging into `base` itself would make a resumed run compare the checkpoint with itself.
    data: dict[str, Any] = copy.deepcopy(dict(base or {}))
    if config_file is None and dataset is not None and base is None:
        config_file = default_config_file(dataset)
    if config_file is not None:
        file_data = read_yaml(config_file)
        try:
            build_dataclass(TrainConfig, _deep_update(config_to_dict(TrainConfig()), file_data))
        except ConfigError as err:
            raise ConfigError(f"{config_file}: {err}") from err
        _deep_update(data, file_data)
    if dataset is not None:
        data["dataset"] = dataset
    if isinstance(overrides, list):
        overrides = overrides_to_dict(overrides)
    _deep_update(data, dict(overrides or {}))
    return build_dataclass(TrainConfig, _deep_update(config_to_dict(TrainConfig()), data))


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
