"""Finding a dataset by id or path: `resolve_dataset("pusht")` -> the root folder of a LeRobot dataset.

Order: an explicit path; `$HF_LEROBOT_HOME/<repo_id>` (default `~/.cache/huggingface/lerobot/<repo_id>`, where
LeRobot users already keep their datasets); an offline mirror folder (`mirror=` or `$EDGEACT_DATASET_MIRROR`)
that
holds either `<repo_id>/` as a LeRobot folder or a known source file (PushT's diffusion-policy zarr) imported
once
into the cache; a download with `huggingface_hub` when it is installed and the machine is online; else
DatasetNotFoundError saying how to get the data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from .errors import DatasetError, DatasetNotFoundError

log = logging.getLogger(__name__)

ALIASES = {"pusht": "lerobot/pusht", "pusht_keypoints": "lerobot/pusht_keypoints"}
# Mirror files that can stand in for a hub dataset, and how to import them: (file, observation kind).
MIRROR_SOURCES = {
    "lerobot/pusht": ("pusht_cchi_v7_replay.zarr", "image"),
    "lerobot/pusht_keypoints": ("pusht_cchi_v7_replay.zarr", "keypoints"),
}


def lerobot_home() -> Path:
    env = os.environ.get("HF_LEROBOT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "huggingface" / "lerobot"


def _is_dataset(path: Path) -> bool:
    return (path / "meta" / "info.json").is_file()


def not_a_dataset(path: Path) -> DatasetNotFoundError:
    """The error for a folder without meta/info.json; a LeRobot v1.x folder is named with how to convert."""
    old_info = path / "meta_data" / "info.json"
    arrows = sorted((path / "train").glob("*.arrow")) if (path / "train").is_dir() else []
    if old_info.is_file() or arrows:
        version = ""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            version = str(json.loads(old_info.read_text()).get("codebase_version", ""))
        found = ", ".join(
            str(p.relative_to(path)) for p in ([old_info] if old_info.is_file() else []) + arrows[:1]
        )
        return DatasetNotFoundError(
            f"{path}: a LeRobot {version or 'v1.x'} dataset ({found}: the format before v2.0), which edgeact "
            "does not read; convert it with LeRobot 0.1/0.2's `python lerobot/common/datasets/v2/"
            "convert_dataset_v1_to_v2.py --repo-id ID --single-task 'TASK'` (then to v2.1 or v3.0), or "
            "download the dataset's v2.1/v3.0 revision from the hub"
        )
    return DatasetNotFoundError(f"{path}: not a LeRobot dataset (no meta/info.json)")


def resolve_dataset(name_or_path: str | os.PathLike, *, mirror: str | os.PathLike | None = None) -> Path:
    """The root of a local LeRobot dataset for a path, an id such as `lerobot/pusht`, or an alias
    (`pusht`)."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not _is_dataset(path):
            raise not_a_dataset(path)
        return path
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise DatasetNotFoundError(f"{path}: no such dataset folder")
    repo_id = ALIASES.get(text, text)
    cached = lerobot_home() / repo_id
    if _is_dataset(cached):
        return cached
    mirror_dir = mirror if mirror is not None else os.environ.get("EDGEACT_DATASET_MIRROR") or None
    if mirror_dir:
        found = _from_mirror(repo_id, Path(mirror_dir).expanduser(), cached)
        if found is not None:
            return found
    downloaded = _from_hub(repo_id, cached)
    if downloaded is not None:
        return downloaded
    hint = (
        f" or `edgeact-dataset import {MIRROR_SOURCES[repo_id][0]} {cached}"
        + (" --observation keypoints`" if MIRROR_SOURCES[repo_id][1] == "keypoints" else "`")
        if repo_id in MIRROR_SOURCES
        else ""
    )
    raise DatasetNotFoundError(
        f"dataset {text!r} ({repo_id}) not found: looked in {cached}"
        + (f" and the mirror {mirror_dir}" if mirror_dir else "")
        + ". Put a LeRobot folder there, set EDGEACT_DATASET_MIRROR to a folder holding it"
        + hint
        + ", or install huggingface_hub and go online."
    )


def _from_mirror(repo_id: str, mirror: Path, cached: Path) -> Path | None:
    for candidate in (mirror / repo_id, mirror / repo_id.split("/")[-1]):
        if _is_dataset(candidate):
            return candidate
    source, observation = MIRROR_SOURCES.get(repo_id, (None, None))
    if source is None or not (mirror / source).exists():
        return None
    from .zarr_import import import_diffusion_policy_zarr

    log.info("importing %s from the mirror into %s (once)", mirror / source, cached)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        import_diffusion_policy_zarr(mirror / source, cached, observation=observation)
    except DatasetError:
        if _is_dataset(cached):  # a concurrent import won the race
            return cached
        raise
    return cached


def _from_hub(repo_id: str, cached: Path) -> Path | None:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        snapshot_download(repo_id, repo_type="dataset", local_dir=cached)
    except Exception as err:  # offline, unknown repo, auth: all mean "not available from the hub"
        log.info("could not download %s: %s", repo_id, err)
        return None
    return cached if _is_dataset(cached) else None
