"""Property tests (hypothesis) of windowing at episode edges against a plain per-sample reference."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from edgeact.train.data import ChunkDataset, LeRobotDataset
from edgeact.train.data.synthetic import make_synthetic_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_CACHE: dict[tuple[int, ...], LeRobotDataset] = {}
_TMP = tempfile.TemporaryDirectory(prefix="edgeact-windowing-")


def dataset(lengths: tuple[int, ...]) -> LeRobotDataset:
    if lengths not in _CACHE:
        root = Path(_TMP.name) / "_".join(map(str, lengths))
        make_synthetic_dataset(root, episodes=len(lengths), length=list(lengths), cameras=(), state_dim=3)
        _CACHE[lengths] = LeRobotDataset(root)
    return _CACHE[lengths]


def reference(ds: LeRobotDataset, episodes: list[int], k: int, history: list[int]):
    """Per sample, in order: (row, actions (k, A), pad (k,), states (len(history), S), state pad)."""
    out = []
    action, state = ds.column("action"), ds.column("observation.state")
    for ep in episodes:
        e = ds.meta.episodes[ep]
        for t in range(e.length):
            row = e.from_frame + t
            steps = [min(t + j, e.length - 1) for j in range(k)]
            pad = [t + j >= e.length for j in range(k)]
            hist = [max(t + h, 0) for h in history]
            hpad = [t + h < 0 for h in history]
            out.append(
                (
                    row,
                    action[[e.from_frame + s for s in steps]],
                    pad,
                    state[[e.from_frame + s for s in hist]],
                    hpad,
                )
            )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4).map(tuple),
    k=st.integers(1, 16),
    history=st.lists(st.integers(-4, 0), min_size=1, max_size=3, unique=True),
    data=st.data(),
)
def test_windows_match_reference(lengths, k, history, data):
    ds = dataset(lengths)
    episodes = data.draw(st.lists(st.integers(0, len(lengths) - 1), min_size=1, unique=True))
    chunks = ChunkDataset(
        ds,
        k,
        episodes=episodes,
        delta_timestamps={"observation.state": [h / 10 for h in history]},
        frame_cache=False,
    )
    ref = reference(ds, episodes, k, history)
    assert len(chunks) == len(ref) == sum(lengths[e] for e in episodes)
    idx = data.draw(st.lists(st.integers(0, len(ref) - 1), min_size=1, max_size=12))
    b = chunks.get_batch(idx)
    for i, sample in enumerate(idx):
        row, act, pad, states, hpad = ref[sample]
        assert b["index"][i] == row
        np.testing.assert_array_equal(b["action"][i], act)
        np.testing.assert_array_equal(b["action_is_pad"][i], pad)
        np.testing.assert_array_equal(b["observation.state"][i], states)
        np.testing.assert_array_equal(b["observation.state_is_pad"][i], hpad)
    # The first step of a chunk is never padding, and padding, once it starts, runs to the end.
    assert not b["action_is_pad"][:, 0].any()
    assert (np.diff(b["action_is_pad"].astype(int), axis=1) >= 0).all()
    # Actions never cross into another episode: dimension 0 encodes 1000 * episode + frame.
    assert (b["action"][:, :, 0] // 1000 == b["episode_index"][:, None]).all()
