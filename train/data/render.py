"""Rendering an episode for people: camera frames with the state and action traces drawn under them.

Pure numpy drawing (no GUI toolkit): each output frame is the episode's camera images side by side,
scaled up by an integer factor, above a plot panel with one trace per state dimension (blue to teal) and per
action dimension (red to amber) over the whole episode, each scaled to its own range, and a cursor at the
current step.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .reader import LeRobotDataset
from .video import VideoEncoder, VideoSettings

PANEL_H = 96


def _traces(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, D) values -> integer pixel rows (D, width) scaled per dimension into 0..height-1."""
    t = len(values)
    xs = np.linspace(0, t - 1, width).round().astype(int)
    v = values[xs].T.astype(np.float64)  # (D, width)
    lo, hi = v.min(axis=1, keepdims=True), v.max(axis=1, keepdims=True)
    scaled = (v - lo) / np.where(hi > lo, hi - lo, 1.0)
    return (height - 2 - scaled * (height - 4)).round().astype(int)


# Trace colours run from the first to the second end of each family, never towards the white background
# (ALOHA's 14 dimensions, the gripper last, stay visible).
STATE_COLORS = ((20, 30, 170), (30, 170, 200))  # dark blue -> teal
ACTION_COLORS = ((170, 20, 20), (220, 150, 0))  # dark red -> amber


def trace_colors(n: int, family: tuple[tuple[int, int, int], tuple[int, int, int]]) -> np.ndarray:
    """uint8 (n, 3): n colours spread evenly between the family's two ends."""
    t = np.linspace(0.0, 1.0, n)[:, None] if n > 1 else np.zeros((1, 1))
    lo, hi = np.array(family[0], dtype=np.float64), np.array(family[1], dtype=np.float64)
    return (lo + t * (hi - lo)).round().astype(np.uint8)


def _panel(state: np.ndarray | None, action: np.ndarray, width: int) -> np.ndarray:
    panel = np.full((PANEL_H, width, 3), 255, dtype=np.uint8)
    groups = [(action, ACTION_COLORS)]
    if state is not None:
        groups.insert(0, (state, STATE_COLORS))
    cols = np.arange(width)
    for values, family in groups:
        rows = _traces(values, width, PANEL_H)
        for row, shade in zip(rows, trace_colors(len(rows), family), strict=True):
            panel[row, cols] = shade
            panel[np.clip(row + 1, 0, PANEL_H - 1), cols] = shade
    return panel


def _mark(img: np.ndarray, xy: np.ndarray, extent: float, color, size: int) -> None:
    """Draw a cross at workspace position xy (units in 0..extent, image spans the workspace) in place."""
    h, w = img.shape[:2]
    cx, cy = int(xy[0] / extent * w), int(xy[1] / extent * h)
    for d in range(-size, size + 1):
        for e in (-1, 0, 1):  # 3 px thick
            for x, y in ((cx + d, cy + e), (cx + e, cy + d)):
                if 0 <= x < w and 0 <= y < h:
                    img[y, x] = color


def episode_frames(
    ds: LeRobotDataset, episode: int, *, scale: int | None = None, xy_extent: float | None = None
) -> np.ndarray:
    """uint8 (T, H', W', 3): the cameras side by side, scaled, above the state/action panel with a cursor.

    With `xy_extent` (PushT: 512), 2-D state and action are workspace x, y positions that the first camera
    shows whole: they are also marked on it (state blue, action red)."""
    e = next(e for e in ds.meta.episodes if e.index == episode)
    rows = np.arange(e.from_frame, e.to_frame)
    cams = [ds.read_frames(k, rows) for k in ds.meta.camera_keys]  # each (T, H, W, 3)
    if cams:
        h = max(c.shape[1] for c in cams)
        cams = [np.pad(c, ((0, 0), (0, h - c.shape[1]), (0, 0), (0, 0))) for c in cams]
        top = np.concatenate(cams, axis=2)  # (T, H, sum W, 3)
        k = scale or max(1, 384 // top.shape[2])
        top = top.repeat(k, axis=1).repeat(k, axis=2)
    else:
        top = np.full((e.length, 16, 384, 3), 255, dtype=np.uint8)
    width = top.shape[2]
    state = ds.column("observation.state")[rows] if "observation.state" in ds.columns else None
    action = ds.column("action")[rows].reshape(e.length, -1)
    if xy_extent and cams and action.shape[1] == 2:
        cam_w = cams[0].shape[2] * (top.shape[2] // sum(c.shape[2] for c in cams))
        for t in range(e.length):
            view = top[t, :, :cam_w]
            if state is not None and state.shape[1] == 2:
                _mark(view, state[t], xy_extent, (0, 0, 160), max(4, cam_w // 24))
            _mark(view, action[t], xy_extent, (220, 0, 0), max(4, cam_w // 24))
    panel = _panel(state, action, width)
    out = np.empty((e.length, top.shape[1] + PANEL_H, width, 3), dtype=np.uint8)
    for t in range(e.length):
        out[t, : top.shape[1]] = top[t]
        out[t, top.shape[1] :] = panel
        x = round(t * (width - 1) / max(e.length - 1, 1))
        out[t, top.shape[1] :, x] = (0, 0, 0)
    return out


def write_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    """Write frames as h264 (even sizes are padded) through the dataset video encoder."""
    h, w = frames.shape[1] + frames.shape[1] % 2, frames.shape[2] + frames.shape[2] % 2
    frames = np.pad(frames, ((0, 0), (0, h - frames.shape[1]), (0, w - frames.shape[2]), (0, 0)))
    enc = VideoEncoder(path, fps=fps, height=h, width=w, settings=VideoSettings(codec="h264", gop=30))
    enc.write(frames)
    enc.close()


def write_png(image: np.ndarray, path: Path) -> None:
    """One uint8 (H, W, 3) image as PNG through PyAV's encoder."""
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    ctx.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    path.write_bytes(b"".join(bytes(p) for p in packets))


def strip(frames: np.ndarray, count: int = 8) -> np.ndarray:
    """`count` evenly spaced frames side by side: uint8 (H, count * W, 3)."""
    idx = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return np.concatenate(list(frames[idx]), axis=1)
