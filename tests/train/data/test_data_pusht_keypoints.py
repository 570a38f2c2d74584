"""`lerobot/pusht_keypoints` from the diffusion-policy zarr: keypoints equal to gym-pusht's observation."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from edgeact.runtime.robots.pusht_sim import ENV_STATE, PushTSim
from edgeact.train.data import LeRobotDataset, import_diffusion_policy_zarr
from edgeact.train.data.cli import main
from edgeact.train.data.zarr_import import pusht_block_keypoints
from test_data_zarr import write_replay_buffer

pytest.importorskip("gym_pusht")


def test_keypoint_import_layout(tmp_path):
    src = write_replay_buffer(tmp_path / "buf.zarr", [5, 12])
    out = tmp_path / "kp"
    argv = ["import", str(tmp_path / "buf.zarr"), str(out), "--observation", "keypoints", "--quiet"]
    assert main(argv) == 0
    ds = LeRobotDataset(out)
    assert ds.meta.camera_keys == [] and ds.meta.features[ENV_STATE]["shape"] == [16]
    state = np.asarray(src["data/state"])
    np.testing.assert_array_equal(ds.column("observation.state"), state[:, :2])
    np.testing.assert_allclose(ds.column(ENV_STATE), pusht_block_keypoints(state[:, 2:5]), atol=1e-4)
    assert ds.meta.info["edgeact_source"]["observation"] == "keypoints"


def test_keypoint_import_needs_the_block_pose(tmp_path):
    from edgeact.train.data import DatasetFormatError

    write_replay_buffer(tmp_path / "buf.zarr", [4], state_width=2)
    with pytest.raises(DatasetFormatError, match="block pose"):
        import_diffusion_policy_zarr(
            tmp_path / "buf.zarr", tmp_path / "o", observation="keypoints", progress=False
        )


@pytest.fixture(scope="module")
def real_zarr(shared_datasets):
    path = shared_datasets / "pusht_cchi_v7_replay.zarr"
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return zarr.open_group(str(path), mode="r")


def test_keypoints_equal_the_env_observation_at_recorded_states(real_zarr):
    """gym-pusht reset to recorded states (angle first) observes the keypoints the import computes."""
    state = np.asarray(real_zarr["data/state"][:2000:97], dtype=np.float64)  # 21 states over 15 episodes
    ours = pusht_block_keypoints(state[:, 2:5])
    sim = PushTSim(observation="keypoints")
    sim.connect()
    try:
        env = [sim.reset(seed=0, state=s).vectors[ENV_STATE] for s in state]
    finally:
        sim.disconnect()
    # The reset runs one physics step; a block the agent is not touching does not move in it.
    err = np.abs(np.asarray(env) - ours).max(axis=1)
    assert np.median(err) < 1e-3, err
    assert sim.spec.cameras == () and sim.spec.vector_dims == {ENV_STATE: 16}


def test_zarr_keypoint_array_is_another_rigid_point_set(real_zarr):
    """The zarr's own `keypoint` (9 points) are fixed block points moved by its pose: not the env's 8."""
    kp = np.asarray(real_zarr["data/keypoint"][::50], dtype=np.float64)  # (N, 9, 2)
    state = np.asarray(real_zarr["data/state"][::50], dtype=np.float64)
    c, s = np.cos(state[:, 4])[:, None], np.sin(state[:, 4])[:, None]
    d = kp - state[:, None, 2:4]
    local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)  # body frame
    assert kp.shape[1] == 9 and np.abs(local - np.median(local, axis=0)).max() < 2.5
