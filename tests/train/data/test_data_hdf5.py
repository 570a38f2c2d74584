"""ACT/ALOHA HDF5 episodes -> LeRobot v3.0, from small files in the real layout (raw and JPEG images)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from edgeact.train.data import DatasetFormatError, LeRobotDataset
from edgeact.train.data.hdf5_import import ALOHA_JOINTS, import_aloha_hdf5
from edgeact.train.data.synthetic import synthetic_episode

H, W, T = 48, 64, 15
CAMS = ("cam_high", "cam_low")


def episode_arrays(ep: int) -> dict[str, np.ndarray]:
    arr = synthetic_episode(ep, T, cameras=CAMS, image_hw=(H, W), state_dim=14, action_dim=14, seed=7)
    arr["qvel"] = np.diff(arr["observation.state"], axis=0, prepend=arr["observation.state"][:1])
    return arr


def write_act_episode(path, ep: int, *, compress: bool = False) -> None:
    arr = episode_arrays(ep)
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = True
        obs = f.create_group("observations")
        obs.create_dataset("qpos", data=arr["observation.state"].astype(np.float64))
        obs.create_dataset("qvel", data=arr["qvel"].astype(np.float64))
        images = obs.create_group("images")
        f.create_dataset("action", data=arr["action"].astype(np.float64))
        if not compress:
            for cam in CAMS:
                images.create_dataset(cam, data=arr[cam], chunks=(1, H, W, 3))
            return
        f.attrs["compress"] = True

        lens = np.zeros((len(CAMS), T), dtype=np.int64)
        blobs = {cam: [_jpeg(img) for img in arr[cam]] for cam in CAMS}
        width = max(len(b) for bs in blobs.values() for b in bs)
        for c, cam in enumerate(CAMS):
            padded = np.zeros((T, width), dtype=np.uint8)
            for t, b in enumerate(blobs[cam]):
                padded[t, : len(b)] = np.frombuffer(b, np.uint8)
                lens[c, t] = len(b)
            images.create_dataset(cam, data=padded)
        f.create_dataset("compress_len", data=lens)


def _jpeg(img: np.ndarray) -> bytes:
    from fractions import Fraction

    import av

    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = W, H, "yuvj444p", Fraction(1, 1)
    ctx.options = {"qscale": "2"}
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj444p")
    return b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])


@pytest.mark.parametrize("compress", [False, True])
def test_import_aloha_folder(tmp_path, compress):
    src = tmp_path / "aloha"
    src.mkdir()
    for ep in (0, 1, 10):  # numeric order, not lexical: episode_10 comes last
        write_act_episode(src / f"episode_{ep}.hdf5", ep, compress=compress)
    root = import_aloha_hdf5(src, tmp_path / "out", fps=50, task="transfer", progress=False)
    ds = LeRobotDataset(root)
    assert ds.meta.fps == 50 and ds.meta.total_episodes == 3 and ds.meta.total_frames == 3 * T
    assert ds.meta.camera_keys == ["observation.images.cam_high", "observation.images.cam_low"]
    assert ds.meta.features["observation.state"]["names"] == ALOHA_JOINTS
    assert ds.meta.tasks == {0: "transfer"}
    for i, ep in enumerate((0, 1, 10)):
        want = episode_arrays(ep)
        rows = slice(i * T, (i + 1) * T)
        np.testing.assert_array_equal(ds.column("observation.state")[rows], want["observation.state"])
        np.testing.assert_array_equal(
            ds.column("observation.velocity")[rows], want["qvel"].astype(np.float32)
        )
        np.testing.assert_array_equal(ds.column("action")[rows], want["action"])
    frames = ds.episode_frames("observation.images.cam_low", 2).astype(int)
    assert np.abs(frames - episode_arrays(10)["cam_low"]).mean() < 4


def test_bad_hdf5_inputs(tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    write_act_episode(src / "episode_0.hdf5", 0)
    with h5py.File(src / "episode_1.hdf5", "w") as f:
        f.create_dataset("observations/qpos", data=np.zeros((5, 14)))
        f.create_dataset("action", data=np.zeros((4, 14)))
    with pytest.raises(DatasetFormatError, match=r"episode_1.hdf5: datasets have different lengths"):
        import_aloha_hdf5(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["bad"]
    (src / "episode_1.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetFormatError, match=r"episode_1.hdf5: not a readable HDF5 file"):
        import_aloha_hdf5(src, tmp_path / "out", progress=False)
    with pytest.raises(DatasetFormatError, match=r"no camera /observations/images/cam_side"):
        import_aloha_hdf5(src, tmp_path / "out", cameras=["cam_side"], progress=False)
