"""`edgeact-dataset`: import datasets into LeRobot v3.0, print what a dataset holds, render an episode.

edgeact-dataset import pusht_cchi_v7_replay.zarr ~/.cache/huggingface/lerobot/lerobot/pusht
edgeact-dataset import path/to/aloha_hdf5_folder out/aloha --fps 50 --task "transfer the cube"
edgeact-dataset info pusht
edgeact-dataset view pusht --episode 3 --output ep3.mp4     (or .png for a strip of frames)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .reader import LeRobotDataset
from .resolve import resolve_dataset
from .video import VideoSettings


def _import(args: argparse.Namespace) -> int:
    src = Path(args.source)
    fmt = args.format
    if fmt == "auto":
        fmt = "zarr" if src.suffix == ".zarr" or (src / ".zgroup").exists() else "aloha"
    video = VideoSettings(codec=args.codec)
    common = {"overwrite": args.overwrite, "video": video, "progress": not args.quiet}
    if fmt == "zarr":
        from .zarr_import import PUSHT_TASK, import_diffusion_policy_zarr

        out = import_diffusion_policy_zarr(
            src,
            args.output,
            fps=args.fps or 10,
            task=args.task or PUSHT_TASK,
            observation=args.observation,
            **common,
        )
    else:
        from .hdf5_import import import_aloha_hdf5

        out = import_aloha_hdf5(src, args.output, fps=args.fps or 50, task=args.task or "", **common)
    ds = LeRobotDataset(out)
    print(f"wrote {out}: {ds.meta.total_episodes} episodes, {ds.meta.total_frames} frames")
    return 0


MAX_LISTED = 30  # episode lengths shown in the text summary


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def check_videos(ds: LeRobotDataset) -> tuple[int, list[str]]:
    """Open every video file the metadata names and decode its first frame: (files checked, problems)."""
    from .video import iter_frames, probe

    files: dict[Path, str] = {}
    for e in ds.meta.episodes:
        for key, ref in e.videos.items():
            files.setdefault(ref.path, key)
    problems = []
    for path, key in files.items():
        if not path.is_file():
            problems.append(f"{path}: missing (camera {key!r})")
            continue
        try:
            info = probe(path)
            next(iter(iter_frames(path)), None)
        except DatasetError as err:
            problems.append(str(err))
            continue
        h, w = ds.meta.features[key]["shape"][:2]
        if (info["height"], info["width"]) != (h, w):
            problems.append(
                f"{path}: {info['width']}x{info['height']} frames, info.json declares {key!r} as {w}x{h}"
            )
    return len(files), problems


def _info(args: argparse.Namespace) -> int:
    ds = LeRobotDataset(resolve_dataset(args.dataset, mirror=args.mirror))
    m = ds.meta
    checked, problems = check_videos(ds)
    lengths = {e.index: e.length for e in m.episodes}
    if args.json:
        summary = {
            "root": str(m.root),
            "version": m.version,
            "robot_type": m.robot_type,
            "fps": m.fps,
            "episodes": m.total_episodes,
            "frames": m.total_frames,
            "camera_keys": m.camera_keys,
            "episode_lengths": lengths,
            "features": m.features,
            "tasks": m.tasks,
            "stats": m.stats,
            "videos": {"checked": checked, "problems": problems},
        }
        print(json.dumps(summary, indent=2))
        return 1 if problems else 0
    arr = np.array(list(lengths.values()))
    print(f"{m.root}  ({m.version}, robot {m.robot_type})")
    print(f"episodes {m.total_episodes}  frames {m.total_frames}  fps {m.fps}  ", end="")
    print(f"episode length min {arr.min()} / mean {arr.mean():.1f} / max {arr.max()}")
    shown = " ".join(f"{i}:{n}" for i, n in list(lengths.items())[:MAX_LISTED])
    more = f" ... ({len(lengths) - MAX_LISTED} more; --json lists all)" if len(lengths) > MAX_LISTED else ""
    print(f"episode lengths (episode:frames): {shown}{more}")
    cams = ", ".join(f"{k} ({'x'.join(map(str, m.features[k]['shape']))})" for k in m.camera_keys)
    print(f"cameras: {cams or 'none'}")
    print("features:")
    for key, f in m.features.items():
        codec = ""
        if f["dtype"] == "video":
            codec = f"  codec {f.get('info', {}).get('video.codec', '?')}"
        names = f.get("names")
        shown = f"  names {names}" if names and f["dtype"] not in ("video", "image") else ""
        print(f"  {key:32s} {f['dtype']:8s} {f['shape']}{codec}{shown}")
    print("tasks:")
    for i, t in sorted(m.tasks.items()):
        print(f"  {i}: {t}")
    print("stats (images per channel, 0..1):")
    for key, s in m.stats.items():
        if key in m.camera_keys or key.startswith("observation") or key == "action":
            ranges = f"min {_fmt(s['min'])} max {_fmt(s['max'])}"
            print(f"  {key:32s} mean {_fmt(s['mean'])} std {_fmt(s['std'])} {ranges}")
    print(
        f"videos: {checked} file(s) opened and decoded"
        + (f", {len(problems)} problem(s):" if problems else "")
    )
    for line in problems:
        print(f"  {line}")
    return 1 if problems else 0


VIEW_FORMATS = {".mp4": "an h264 video of the episode", ".png": "a strip of --frames frames"}


def _view(args: argparse.Namespace) -> int:
    from .render import episode_frames, strip, write_mp4, write_png

    suffix = Path(args.output).suffix.lower()
    if suffix not in VIEW_FORMATS:
        known = "; ".join(f"{k}: {v}" for k, v in VIEW_FORMATS.items())
        print(
            f"error: --output {args.output}: {suffix or 'no extension'} is not a supported format ({known})",
            file=sys.stderr,
        )
        return 2
    ds = LeRobotDataset(resolve_dataset(args.dataset, mirror=args.mirror))
    if args.episode not in {e.index for e in ds.meta.episodes}:
        print(f"error: episode {args.episode} not in 0..{ds.meta.total_episodes - 1}", file=sys.stderr)
        return 2
    frames = episode_frames(ds, args.episode, xy_extent=args.xy_extent)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        write_png(strip(frames, args.frames), out)
    else:
        write_mp4(frames, out, ds.meta.fps)
    print(f"wrote {out} ({len(frames)} frames of episode {args.episode})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeact-dataset", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    imp = sub.add_parser(
        "import", help="convert a diffusion-policy zarr or an ALOHA HDF5 folder to LeRobot v3.0"
    )
    imp.add_argument("source")
    imp.add_argument("output")
    imp.add_argument("--format", choices=("auto", "zarr", "aloha"), default="auto")
    imp.add_argument("--fps", type=int, default=None, help="frame rate (zarr: 10, ALOHA: 50)")
    imp.add_argument("--task", default=None)
    imp.add_argument(
        "--observation",
        choices=("image", "keypoints"),
        default="image",
        help="zarr: the camera (lerobot/pusht) or the block keypoints (lerobot/pusht_keypoints)",
    )
    imp.add_argument("--codec", default="auto", choices=("auto", "av1", "h264", "mpeg4"))
    imp.add_argument("--overwrite", action="store_true")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=_import)
    for name, func, text in (
        ("info", _info, "print what a dataset holds"),
        ("view", _view, "render an episode"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("dataset", help="a path, a LeRobot id, or pusht")
        s.add_argument("--mirror", default=None, help="offline mirror folder (else $EDGEACT_DATASET_MIRROR)")
        s.set_defaults(func=func)
        if name == "info":
            s.add_argument("--json", action="store_true")
        else:
            s.add_argument("--episode", type=int, default=0)
            s.add_argument("--output", required=True, help="an .mp4 file, or .png for a strip of frames")
            s.add_argument("--frames", type=int, default=8, help="frames in a .png strip")
            s.add_argument(
                "--xy-extent",
                type=float,
                default=None,
                help="mark 2-D state/action as x, y positions on the first camera (PushT: 512)",
            )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
