"""A PyAV stand-in for `torchvision.io.VideoReader`, for the LeRobot benchmarks only.

LeRobot 0.4.x decodes dataset videos with torchcodec when it is importable, else with its "pyav" path through
`torchvision.io.VideoReader`. Here neither works: the PyPI torchcodec wheel needs CUDA libraries, and the
torchvision that installs beside torch 2.13 no longer has `VideoReader`. `install()` puts back a reader with
the interface LeRobot's pyav path uses (`seek(seconds, keyframes_only)`, iteration yielding
`{"data": (C, H, W) uint8, "pts": seconds}`, `.container`), built on PyAV the way torchvision's pyav backend
was: seek to the keyframe at or before the time, then decode forward. LeRobot's own code (which frames,
tolerance, float conversion) runs unchanged on top of it.
"""

from __future__ import annotations

from typing import Any

import av
import torch


class PyAVVideoReader:
    def __init__(self, path: str, stream: str = "video") -> None:
        if stream != "video":
            raise ValueError(f"only video streams are supported, got {stream!r}")
        self.container = av.open(str(path))
        self._stream = self.container.streams.video[0]
        self._frames: Any = None

    def seek(self, seconds: float, keyframes_only: bool = True) -> PyAVVideoReader:
        offset = int(seconds / self._stream.time_base)
        self.container.seek(offset, stream=self._stream, any_frame=not keyframes_only, backward=True)
        self._frames = None
        return self

    def __iter__(self) -> PyAVVideoReader:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._frames is None:
            self._frames = self.container.decode(self._stream)
        frame = next(self._frames)
        data = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        return {"data": data, "pts": float(frame.pts * frame.time_base)}


def install() -> bool:
    """Provide `torchvision.io.VideoReader` (and accept `set_video_backend("pyav")`) when torchvision
    lacks it; True when the stand-in was installed."""
    import torchvision
    import torchvision.io

    if hasattr(torchvision.io, "VideoReader"):
        return False
    torchvision.io.VideoReader = PyAVVideoReader
    torchvision.set_video_backend = lambda backend: None
    return True
