"""Which dataset features a training run uses, checked against the config and (on resume) the checkpoint.

The policy sees the selected cameras (`observation.image` or `observation.images.<camera>`),
`observation.state`, `observation.environment_state` when present, and `action`; their info.json entries
(dtype, shape, names) and stats travel in the checkpoint's `dataset` section, read by export and eval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeact.train.train_config import TrainConfig, TrainError, json_safe

VECTOR_KEYS = ("observation.state", "observation.environment_state")


class FeatureError(TrainError):
    """The dataset lacks a feature the config or the checkpoint needs, or a shape does not match."""


def camera_name(key: str) -> str:
    """`observation.image` -> `image`; `observation.images.top` -> `top` (docs/design.md "Names")."""
    return "image" if key == "observation.image" else key.removeprefix("observation.images.")


def _shape(feature: dict[str, Any]) -> list[int]:
    return [int(d) for d in feature.get("shape", [])]


def select_features(
    meta: Any, cfg: TrainConfig, root: Path, prev: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(features, stats) for the policy; `prev` is the config of a checkpoint being resumed (must fit)."""
    all_features = meta.features
    cams = list(meta.camera_keys)
    if cfg.cameras is not None:
        by_name = {camera_name(k): k for k in cams}
        missing = [c for c in cfg.cameras if c not in by_name]
        if missing:
            raise FeatureError(
                f"dataset {root}: the config's cameras {missing} are not in the dataset "
                f"(it has {sorted(by_name) or 'no cameras'})"
            )
        cams = [by_name[c] for c in cfg.cameras]
    if "action" not in all_features:
        raise FeatureError(f"dataset {root}: no 'action' feature to learn (it has {sorted(all_features)})")
    if len(_shape(all_features["action"])) != 1:
        raise FeatureError(
            f"dataset {root}: 'action' must be a vector, shape is {_shape(all_features['action'])}"
        )
    keys = cams + [k for k in VECTOR_KEYS if k in all_features] + ["action"]
    if (
        not cams
        and "observation.environment_state" not in all_features
        and "observation.state" not in all_features
    ):
        raise FeatureError(
            f"dataset {root}: no camera, state or environment state to condition the policy on"
        )
    features = {k: dict(all_features[k]) for k in keys}
    missing_stats = [k for k in keys if k not in meta.stats]
    if missing_stats:
        raise FeatureError(f"dataset {root}: meta/stats.json has no stats for {missing_stats}")
    stats = {k: meta.stats[k] for k in keys}
    if prev is not None:
        check_against_checkpoint(features, prev["dataset"]["features"], root)
    return features, stats


def check_against_checkpoint(features: dict[str, Any], ckpt_features: dict[str, Any], root: Path) -> None:
    """The resumed checkpoint's features must exist in the dataset with the same shapes."""
    for key, old in ckpt_features.items():
        if key not in features:
            raise FeatureError(
                f"dataset {root}: the checkpoint's policy uses {key!r}, which this run does not have"
            )
        new_shape, old_shape = _shape(features[key]), _shape(old)
        if new_shape != old_shape:
            what = "action dim" if key == "action" else f"{key} shape"
            raise FeatureError(
                f"dataset {root}: {what} mismatch: {new_shape} in the dataset, {old_shape} in the checkpoint"
            )
    extra = sorted(set(features) - set(ckpt_features))
    if extra:
        raise FeatureError(f"dataset {root}: features {extra} are not in the checkpoint being resumed")


def repo_id(name: str, root: Path) -> str | None:
    """The LeRobot repo id of a dataset given by id or alias, or found under $HF_LEROBOT_HOME; else None."""
    from edgeact.train.data.resolve import ALIASES, lerobot_home

    if not Path(name).expanduser().exists() and not name.startswith((".", "/", "~")) and name.count("/") <= 1:
        return ALIASES.get(name, name)
    try:
        rel = Path(root).expanduser().resolve().relative_to(lerobot_home().resolve())
    except ValueError:
        return None
    return rel.as_posix() if len(rel.parts) == 2 else None


def dataset_section(
    cfg: TrainConfig, root: Path, meta: Any, features: dict[str, Any], stats: dict[str, Any]
) -> dict[str, Any]:
    """The checkpoint config's `dataset` section (docs/design.md "Checkpoint")."""
    cams = [k for k in features if k.startswith("observation.image")]
    return json_safe(
        {
            "id": cfg.dataset,
            # Absolute, so export and eval find the frames from any working directory (issue 12); the repo
            # id lets them look the dataset up again where the folder has moved.
            "root": str(Path(root).expanduser().resolve()),
            "repo_id": repo_id(cfg.dataset, Path(root)),
            "fps": meta.fps,
            "features": features,
            "stats": stats,
            "camera_keys": cams,
            "cameras": [camera_name(k) for k in cams],
            "episodes": cfg.episodes,
            "total_frames": getattr(meta, "total_frames", None),
        }
    )
