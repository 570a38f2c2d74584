"""Pre/post-processing: the numpy reference against cv2/torch, and the C++ core against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from edgeact.runtime import _core, core  # noqa: F401  (core initialises the extension)
from edgeact.runtime.prepost_ref import PostConfig, PostProcessor, resize_bilinear

SIZES = [
    ((96, 96), (96, 96)),
    ((480, 640), (96, 128)),
    ((37, 53), (24, 32)),
    ((10, 12), (31, 29)),
    ((5, 7), (5, 3)),
]


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_reference_resize_agrees_with_cv2_within_one(src: tuple[int, int], dst: tuple[int, int]) -> None:
    cv2 = pytest.importorskip("cv2")
    img = _frame(*src)
    ours = resize_bilinear(img, *dst).astype(np.int16)
    theirs = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_reference_resize_equals_torch_interpolate_rounded(
    src: tuple[int, int], dst: tuple[int, int]
) -> None:
    torch = pytest.importorskip("torch")
    img = _frame(*src, seed=1)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].to(torch.float64)  # (1, C, H, W)
    y = torch.nn.functional.interpolate(x, size=dst, mode="bilinear", align_corners=False, antialias=False)
    theirs = torch.floor(y + 0.5)[0].permute(1, 2, 0).numpy().astype(np.int16)
    ours = resize_bilinear(img, *dst).astype(np.int16)
    diff = np.abs(ours - theirs)
    assert diff.max() <= 1  # the same formula; only the evaluation order of the float products differs
    assert (diff == 0).mean() > 0.999


def test_reference_resize_identity_and_constant() -> None:
    img = _frame(9, 11)
    np.testing.assert_array_equal(resize_bilinear(img, 9, 11), img)
    flat = np.full((20, 30, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize_bilinear(flat, 7, 13), np.full((7, 13, 3), 77, np.uint8))


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_core_resize_equals_reference_exactly(src: tuple[int, int], dst: tuple[int, int]) -> None:
    img = _frame(*src, seed=2)
    want = resize_bilinear(img, *dst)
    np.testing.assert_array_equal(_core.resize(img, *dst), want)
    nchw = _core.resize(img, dst[0], dst[1], _core.Layout.NCHW)
    np.testing.assert_array_equal(nchw, want.transpose(2, 0, 1))


def _post_params(cfg: PostConfig, a: int) -> _core.PostParams:
    p = _core.PostParams()
    for name in ("lower", "upper", "max_delta"):
        v = getattr(cfg, name)
        setattr(p, name, [] if v is None else list(np.broadcast_to(np.asarray(v, np.float32), (a,))))
    return p


@pytest.mark.parametrize(
    "cfg",
    [
        PostConfig(),
        PostConfig(lower=-0.5, upper=[0.5, 0.7, 0.2]),
        PostConfig(max_delta=[0.1, 0.05, 0.3]),
        PostConfig(lower=-1.0, upper=1.0, max_delta=0.2),
    ],
)
def test_core_post_processor_equals_reference(cfg: PostConfig) -> None:
    a = 3
    rng = np.random.default_rng(3)
    ref, cpp = PostProcessor(a, cfg), _core.PostProcessor(a, _post_params(cfg, a))
    for episode in range(2):
        init = None if episode == 0 else np.array([0.1, -0.2, 0.3], np.float32)
        ref.reset(init)
        cpp.reset(init)
        for t in range(40):
            action = rng.uniform(-2, 2, a).astype(np.float32)
            if t % 7 == 3:
                action[t % a] = [np.nan, np.inf, -np.inf][t % 3]
            if t % 11 == 5:
                action = None
            want, want_status = ref.apply(action)
            got, got_status = cpp.apply(action)
            assert _core.status_name(got_status) == want_status
            if want is None:
                assert got is None
            else:
                np.testing.assert_array_equal(got, want)


def test_post_processor_holds_last_safe_command_on_nan() -> None:
    post = PostProcessor(2, PostConfig(max_delta=0.1))
    post.reset(np.zeros(2, np.float32))
    cmd, status = post.apply(np.array([1.0, -1.0], np.float32))
    np.testing.assert_allclose(cmd, [0.1, -0.1])
    assert status == "ok"
    held, status = post.apply(np.array([np.nan, 0.0], np.float32))
    assert status == "bad_output"
    np.testing.assert_array_equal(held, cmd)


def test_post_params_are_validated() -> None:
    with pytest.raises(ValueError, match="max_delta"):
        PostProcessor(2, PostConfig(max_delta=-1.0))
    with pytest.raises(ValueError, match="lower"):
        PostProcessor(2, PostConfig(lower=1.0, upper=0.0))
    bad = _core.PostParams()
    bad.lower = [0.0]
    with pytest.raises(ValueError, match=r"post\.lower"):
        _core.PostProcessor(2, bad)
