"""Import a LeRobot ACT `pretrained_model/` folder into an edgeact checkpoint (docs/design.md "Checkpoint").

    python -m edgeact.train.lerobot_import PATH/TO/pretrained_model OUTPUT [--fps 10] [--features info.json]

Reads `config.json` (LeRobot's ACTConfig), `model.safetensors` (weights under `model.*`, the same names as
ours) and the normalization statistics from the processor files
(`policy_preprocessor_step_*_normalizer_processor.safetensors`,
`policy_postprocessor_step_*_unnormalizer_processor.safetensors`, keys `<feature>.<stat>`), or,
for LeRobot versions before the processors, from the `normalize_inputs.*` / `unnormalize_outputs.*` buffers in
`model.safetensors`. MIN_MAX and IDENTITY normalization are rewritten as the equivalent mean/std
(mean = (min + max) / 2, std = (max - min) / 2: the same affine map). Writes
`OUTPUT/checkpoints/<step>/` and `OUTPUT/checkpoints/last`, read by `edgeact.train.checkpoint.load_policy`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch
from edgeact.train.config import ACTConfig
from edgeact.train.model import ACTION, ENV_STATE, STATE, ACTPolicy, is_camera_key
from edgeact.train.train_config import TrainError
from safetensors import SafetensorError
from safetensors.torch import load_file

log = logging.getLogger(__name__)

# LeRobot feature types -> the normalization-mapping group they use.
_GROUPS = {"VISUAL": "VISUAL", "STATE": "STATE", "ENV": "ENV", "ACTION": "ACTION"}
# LeRobot ACTConfig fields copied as they are.
_SAME_FIELDS = (
    "chunk_size",
    "n_obs_steps",
    "vision_backbone",
    "replace_final_stride_with_dilation",
    "pre_norm",
    "dim_model",
    "n_heads",
    "dim_feedforward",
    "feedforward_activation",
    "n_encoder_layers",
    "n_decoder_layers",
    "use_vae",
    "latent_dim",
    "n_vae_encoder_layers",
    "dropout",
    "kl_weight",
)
_OLD_BUFFER_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")


class LeRobotImportError(TrainError, ValueError):
    """The folder is not a LeRobot ACT checkpoint this importer understands (names the file and field)."""


_TORCHVISION_SCHEMAS: list[torch.library.Library] = []  # registrations must outlive the call that made them


def ensure_torchvision_importable() -> None:
    """Make `import torchvision` work beside the CPU torch wheel, for benchmarks and tests against LeRobot.

    LeRobot's ACT takes its ResNet18 from torchvision. The reachable torchvision wheel is CUDA-linked and
    fails on the missing `torchvision::nms` operator; declaring the `nms` and `qnms` schemas (no kernels) lets
    its pure-Python models import (REFERENCE section 7). Nothing in ACT calls nms. Idempotent.
    """
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        if _TORCHVISION_SCHEMAS:
            raise
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _TORCHVISION_SCHEMAS.append(lib)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LeRobotImportError(f"{path}: cannot read JSON: {err}") from err
    if not isinstance(data, dict):
        raise LeRobotImportError(f"{path}: expected a JSON object")
    return data


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise LeRobotImportError(f"{path}: cannot read safetensors: {err}") from err


def convert_config(lr: dict[str, Any], where: str = "config.json") -> ACTConfig:
    """LeRobot ACTConfig JSON -> ACTConfig. Execution: `temporal_ensemble_coeff` set means ensembling."""
    if lr.get("type", "act") != "act":
        raise LeRobotImportError(f"{where}: policy type {lr.get('type')!r} is not 'act'")
    missing = [k for k in _SAME_FIELDS if k not in lr]
    if missing:
        raise LeRobotImportError(f"{where}: missing ACT field(s) {missing}")
    fields: dict[str, Any] = {k: lr[k] for k in _SAME_FIELDS}
    coeff = lr.get("temporal_ensemble_coeff")
    if coeff is None:
        fields["execution_mode"] = "chunk"
        fields["n_action_steps"] = lr.get("n_action_steps")
    else:
        fields["execution_mode"] = "ensemble"
        fields["temporal_ensemble_coeff"] = float(coeff)
    # The backbone weights are in model.safetensors; LeRobot's value names a torchvision download.
    fields["pretrained_backbone_weights"] = None
    try:
        return ACTConfig(**fields)
    except ValueError as err:
        raise LeRobotImportError(f"{where}: {err}") from err


def convert_features(lr: dict[str, Any], where: str = "config.json") -> tuple[dict, dict[str, str]]:
    """(info.json-style features, feature -> LeRobot type) from `input_features`/`output_features`."""
    features: dict[str, Any] = {}
    types: dict[str, str] = {}
    for section in ("input_features", "output_features"):
        entries = lr.get(section)
        if not isinstance(entries, dict):
            raise LeRobotImportError(f"{where}: missing {section!r}")
        for key, spec in entries.items():
            kind = spec.get("type") if isinstance(spec, dict) else None
            shape = [int(d) for d in spec.get("shape", [])] if isinstance(spec, dict) else []
            if kind not in _GROUPS:
                raise LeRobotImportError(f"{where}: {section}[{key!r}].type {kind!r} is not supported")
            if kind == "VISUAL":
                if not is_camera_key(key) or len(shape) != 3:
                    raise LeRobotImportError(f"{where}: camera {key!r} with shape {shape} is not supported")
                features[key] = {"dtype": "video", "shape": shape, "names": ["channels", "height", "width"]}
            else:
                if key not in (STATE, ENV_STATE, ACTION):
                    raise LeRobotImportError(f"{where}: feature {key!r} ({kind}) is not supported")
                features[key] = {"dtype": "float32", "shape": shape, "names": None}
            types[key] = kind
    if ACTION not in features:
        raise LeRobotImportError(f"{where}: no 'action' in output_features")
    return features, types


def _collect_stats(
    folder: Path, weights: dict[str, torch.Tensor], feature_keys: list[str]
) -> dict[str, dict[str, torch.Tensor]]:
    """feature -> {stat: tensor} from the processor files, or from older LeRobot buffers in the weights."""
    files = sorted(folder.glob("policy_preprocessor*normalizer_processor.safetensors"))
    files += sorted(folder.glob("policy_postprocessor*unnormalizer_processor.safetensors"))
    flat: dict[str, torch.Tensor] = {}
    for path in files:
        flat.update(_read_tensors(path))
    stats: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        feature, stat = key.rsplit(".", 1)
        stats.setdefault(feature, {})[stat] = value
    if stats:
        return stats
    by_buffer = {"buffer_" + k.replace(".", "_"): k for k in feature_keys}
    for key, value in weights.items():  # e.g. normalize_inputs.buffer_observation_state.mean
        if key.startswith(_OLD_BUFFER_PREFIXES):
            _, buffer, stat = key.split(".")
            if buffer in by_buffer:
                stats.setdefault(by_buffer[buffer], {})[stat] = value
    return stats


def _stats_entry(feature: str, mode: str, found: dict[str, torch.Tensor], size: int, where: str) -> dict:
    """Mean/std (plus min/max when known) that reproduce LeRobot's `mode` for this feature."""

    def get(stat: str) -> torch.Tensor:
        if stat not in found:
            raise LeRobotImportError(
                f"{where}: {mode} normalization of {feature!r} needs {stat!r} statistics"
            )
        return found[stat].double().reshape(-1)

    if mode != "IDENTITY" and not found:  # LeRobot passes a feature without statistics through unchanged
        log.warning("%s: no statistics for %r; passed through unnormalized, as LeRobot does", where, feature)
        mode = "IDENTITY"
    if mode == "MEAN_STD":
        mean, std = get("mean"), get("std")
    elif mode == "MIN_MAX":
        low, high = get("min"), get("max")
        mean, std = (low + high) / 2, (high - low) / 2
        # A constant dimension (min == max): LeRobot divides by eps instead of 0, so the constant maps to -1
        # (its processor's MIN_MAX branch). Ours is (x - mean) / (std + 1e-8): mean = min + s, std = s with
        # s >> 1e-8 maps the constant to -1 / (1 + 1e-5) and unnormalizes any output to within 2 s of it.
        flat = high == low
        step = 1e-3 * torch.clamp(low.abs(), min=1.0)
        mean, std = torch.where(flat, low + step, mean), torch.where(flat, step, std)
    elif mode == "IDENTITY":
        mean, std = torch.zeros(size, dtype=torch.float64), torch.ones(size, dtype=torch.float64)
    else:
        raise LeRobotImportError(f"{where}: normalization mode {mode!r} of {feature!r} is not supported")
    entry = {"mean": mean.tolist(), "std": std.tolist()}
    for stat in ("min", "max"):
        if stat in found:
            entry[stat] = found[stat].double().reshape(-1).tolist()
    return entry


def _dataset_features(dataset: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The features of the training dataset's meta/info.json, when it is on this machine: its `root`, else
    `$HF_LEROBOT_HOME/<repo_id>` (LeRobot's cache layout)."""
    from edgeact.train.data.resolve import lerobot_home

    places = []
    if isinstance(dataset.get("root"), str):
        places.append(Path(dataset["root"]).expanduser())
    if isinstance(dataset.get("repo_id"), str):
        places.append(lerobot_home() / dataset["repo_id"])
    for place in places:
        info = place / "meta" / "info.json"
        if info.is_file():
            try:
                feats = _read_json(info).get("features")
            except LeRobotImportError as err:
                log.warning("%s; joint names not taken from it", err)
                continue
            if isinstance(feats, dict):
                return feats, str(info)
    log.warning(
        "joint names unknown (the dataset %s is not on this machine): they will be 0, 1, ...; "
        "pass --features <dataset>/meta/info.json to keep the dataset's names",
        dataset.get("repo_id") or "of train_config.json",
    )
    return None, ""


def _vector_names(info: Any, dim: int) -> list[str] | None:
    names = info.get("names") if isinstance(info, dict) else None
    if isinstance(names, dict):  # LeRobot v2 datasets write {"motors": [...]}
        names = next(iter(names.values()), None)
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str | int) for n in names):
        return [str(n) for n in names]
    return None


def _apply_names(feats: dict[str, Any], given: dict[str, Any], where: str) -> None:
    """Element names of the vector features (state, environment state, action) from an info.json's
    features. Camera names there describe the dataset's (height, width, channel) frames, not the
    policy's (C, H, W) input, so they are not taken."""
    if not isinstance(given, dict):
        raise LeRobotImportError(f"{where}: 'features' must be an object")
    for key, feat in feats.items():
        if is_camera_key(key) or key not in given:
            continue
        names = _vector_names(given[key], feat["shape"][0])
        if names is None and isinstance(given[key], dict) and given[key].get("names") is not None:
            raise LeRobotImportError(
                f"{where}: features[{key!r}].names does not hold {feat['shape'][0]} names "
                f"(the checkpoint's {key!r} has {feat['shape'][0]} dimensions)"
            )
        feat["names"] = names


def import_lerobot_act(
    folder: str | Path,
    output: str | Path,
    *,
    fps: float | None = None,
    features: dict[str, Any] | None = None,
    step: int = 0,
) -> Path:
    """Convert a LeRobot ACT `pretrained_model/` folder; returns the written checkpoint step folder.

    `features` (an info.json's `features`, optional) supplies the joint names of the state and action; without
    it they come from the training dataset's meta/info.json when that is on this machine. `fps` is needed
    when the folder's `train_config.json` does not name the environment's rate.
    """
    from edgeact.train.checkpoint import LAST, checkpoints_dir, save_checkpoint

    folder = Path(folder)
    last = checkpoints_dir(output) / LAST
    if last.exists() or last.is_symlink():
        raise LeRobotImportError(f"{output} already holds a checkpoint ({last}); choose another output")
    lr_cfg = _read_json(folder / "config.json")
    where = str(folder / "config.json")
    cfg = convert_config(lr_cfg, where)
    feats, types = convert_features(lr_cfg, where)
    weights = _read_tensors(folder / "model.safetensors")
    found = _collect_stats(folder, weights, list(feats))
    mapping = lr_cfg.get("normalization_mapping") or {}
    stats = {}
    for key, kind in types.items():
        mode = mapping.get(_GROUPS[kind], "IDENTITY")
        size = feats[key]["shape"][0]  # channels (C, H, W) or vector size
        stats[key] = _stats_entry(key, mode, found.get(key, {}), size, str(folder))
    train_cfg = _read_json(folder / "train_config.json") if (folder / "train_config.json").is_file() else {}
    dataset = train_cfg.get("dataset") if isinstance(train_cfg.get("dataset"), dict) else {}
    names_from = "--features"
    if features is None:
        features, names_from = _dataset_features(dataset)
    _apply_names(feats, features or {}, names_from)

    policy = ACTPolicy(cfg, feats, stats, load_pretrained_backbone=False)
    model_state = {k: v for k, v in weights.items() if not k.startswith(_OLD_BUFFER_PREFIXES)}
    ours = {k for k in policy.state_dict() if k.startswith("model.")}
    missing, unexpected = sorted(ours - set(model_state)), sorted(set(model_state) - ours)
    if missing or unexpected:
        raise LeRobotImportError(
            f"{folder / 'model.safetensors'}: weights do not fit ACT: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}"
        )
    shapes = policy.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(shapes[k].shape)}"
        for k, v in model_state.items()
        if v.shape != shapes[k].shape
    ]
    if wrong:
        raise LeRobotImportError(f"{folder / 'model.safetensors'}: wrong shapes: {wrong[:8]}")
    policy.load_state_dict(model_state, strict=False)  # normalization buffers were built from the stats

    env = train_cfg.get("env") if isinstance(train_cfg.get("env"), dict) else {}
    fps = fps if fps is not None else env.get("fps")
    if fps is None:
        raise LeRobotImportError(
            f"{folder}: the control rate is unknown (no env.fps in train_config.json); pass fps"
        )
    cams = [k for k in feats if is_camera_key(k)]
    config = {
        "policy": cfg.to_dict(),
        "dataset": {
            "id": dataset.get("repo_id", "lerobot-import"),
            "fps": float(fps),
            "features": feats,
            "stats": stats,
            "camera_keys": cams,
            "cameras": [k.removeprefix("observation.images.").removeprefix("observation.") for k in cams],
        },
        "train": {"source": "lerobot", "path": str(folder.resolve()), "lerobot_config": lr_cfg},
    }
    out = save_checkpoint(output, step, policy=policy, config=config)
    log.info("imported %s into %s", folder, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Import a LeRobot ACT pretrained_model/ folder.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--fps", type=float, default=None)
    parser.add_argument("--features", type=Path, default=None, help="info.json whose feature names to keep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        names = _read_json(args.features).get("features") if args.features else None
        if args.features and not isinstance(names, dict):
            raise LeRobotImportError(
                f"{args.features}: no 'features' object (expected a dataset's info.json)"
            )
        out = import_lerobot_act(args.folder, args.output, fps=args.fps, features=names)
    except LeRobotImportError as err:
        print(f"error: {err}")
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
