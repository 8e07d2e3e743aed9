"""SuperPoint: the checkpoint loader (a random network saved in Magic Leap's format, broken files), the
keypoint rules (NMS, border, top-k, unit descriptors), and with the real weights, matches on TUM teddy
that agree with the ground-truth relative pose."""

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from slam.config import FeaturesConfig, load_config  # noqa: E402
from slam.errors import SlamInputError  # noqa: E402
from slam.features import create_extractor  # noqa: E402
from slam.features.matchers import match_brute_force  # noqa: E402
from slam.features.superpoint import (  # noqa: E402
    WEIGHTS_ENV,
    SuperPointExtractor,
    SuperPointNet,
    sample_descriptors,
)

REAL_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights" / "superpoint_v1.pth"


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """A randomly initialised network saved as Magic Leap's checkpoint is: a plain state_dict."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sp") / "random_superpoint.pth"
    torch.save(SuperPointNet().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def real_weights() -> Path:
    if not REAL_WEIGHTS.is_file():
        pytest.skip(f"SuperPoint weights not found at {REAL_WEIGHTS}")
    return REAL_WEIGHTS


def _texture(seed=0, shape=(240, 320)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 8, shape[1] // 8), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), (3, 3), 0)


def test_checkpoint_has_the_published_layout():
    state = SuperPointNet().state_dict()
    assert len(state) == 24
    assert sum(v.numel() for v in state.values()) == 1_300_865
    assert tuple(state["convPb.weight"].shape) == (65, 256, 1, 1)  # 64 cell positions + the dustbin
    assert tuple(state["convDb.weight"].shape) == (256, 256, 1, 1)


def test_random_network_in_checkpoint_format_loads_and_obeys_keypoint_rules(random_weights, device):
    extractor = SuperPointExtractor(random_weights, n_features=300, device=device)
    image = _texture()
    features = extractor.extract(image)
    kp = features.keypoints
    assert 0 < len(features) <= 300
    assert features.descriptors.shape == (len(features), 256) and features.descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features.descriptors, axis=1), 1.0, atol=1e-5)
    # NMS: no two keypoints within the radius (4 px, Chebyshev); none within 4 px of the border.
    gap = np.abs(kp[:, None, :] - kp[None, :, :]).max(axis=2) + np.eye(len(kp)) * 1e9
    assert gap.min() > extractor.nms_radius
    assert kp[:, 0].min() >= 4 and kp[:, 1].min() >= 4
    assert kp[:, 0].max() < image.shape[1] - 4 and kp[:, 1].max() < image.shape[0] - 4
    assert np.all(features.octave == 0)
    # Top-k keeps the best scores: asking for fewer gives the strongest subset.
    fewer = SuperPointExtractor(random_weights, n_features=50, device=device).extract(image)
    assert len(fewer) == 50
    assert fewer.response.min() >= np.sort(features.response)[-50] - 1e-6


def test_batch_extraction_equals_one_image_at_a_time(random_weights, device):
    extractor = SuperPointExtractor(random_weights, n_features=200, device=device)
    images = [_texture(1), _texture(2), _texture(3, shape=(200, 264))]
    batch = extractor.extract_batch(images)
    for image, features in zip(images, batch):
        single = extractor.extract(image)
        np.testing.assert_array_equal(features.keypoints, single.keypoints)
        np.testing.assert_allclose(features.descriptors, single.descriptors, atol=1e-4)


def test_descriptors_are_sampled_at_cell_centres():
    coarse = torch.randn(8, 3, 5)
    xs = torch.tensor([3.5, 8 * 4 + 3.5, 8 * 2 + 3.5])  # centres of cells (0,0), (0,4), (2,2)
    ys = torch.tensor([3.5, 3.5, 8 * 2 + 3.5])
    got = sample_descriptors(coarse, xs, ys)
    expected = torch.stack([coarse[:, 0, 0], coarse[:, 0, 4], coarse[:, 2, 2]])
    torch.testing.assert_close(got, torch.nn.functional.normalize(expected, dim=1))
    # Half way between two cells: the normalised mean of both.
    mid = sample_descriptors(coarse, torch.tensor([7.5]), torch.tensor([3.5]))
    torch.testing.assert_close(mid[0], torch.nn.functional.normalize(coarse[:, 0, 0] + coarse[:, 0, 1], dim=0))


def test_missing_or_malformed_weights_give_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(SlamInputError, match="magicleap/SuperPointPretrainedNetwork") as err:
        create_extractor(FeaturesConfig(type="superpoint"))
    assert "\n" not in str(err.value)
    with pytest.raises(SlamInputError, match="weights not found") as err:
        SuperPointExtractor(tmp_path / "nope.pth", device="cpu")
    assert str(tmp_path / "nope.pth") in str(err.value)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SlamInputError, match="cannot read SuperPoint weights") as err:
        SuperPointExtractor(garbage, device="cpu")
    assert "\n" not in str(err.value)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1a.weight": torch.zeros(64, 1, 3, 3)}, wrong)
    with pytest.raises(SlamInputError, match="not a SuperPoint checkpoint"):
        SuperPointExtractor(wrong, device="cpu")
    reshaped = tmp_path / "reshaped.pth"
    state = SuperPointNet().state_dict()
    state["convDb.weight"] = torch.zeros(128, 256, 1, 1)
    torch.save(state, reshaped)
    with pytest.raises(SlamInputError, match="convDb.weight has shape"):
        SuperPointExtractor(reshaped, device="cpu")


def test_weights_path_from_the_environment(random_weights, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(random_weights))
    extractor = create_extractor(FeaturesConfig(type="superpoint", device="cpu", n_features=10))
    assert len(extractor.extract(_texture())) == 10


def _epipolar_errors(pts1, pts2, T_21, K):
    """Distance (px) of each pts2 from the epipolar line of its pts1 under the ground-truth pose."""
    t = T_21[:3, 3]
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    F = np.linalg.inv(K).T @ tx @ T_21[:3, :3] @ np.linalg.inv(K)
    lines = np.c_[pts1, np.ones(len(pts1))] @ F.T
    return np.abs(np.sum(lines * np.c_[pts2, np.ones(len(pts2))], axis=1)) / np.linalg.norm(lines[:, :2], axis=1)


# Pairs (start frame, +5) where the mocap relative rotation is accurate: elsewhere in this chunk it is off
# by up to 0.7 degrees against the essential matrix of any feature (6 px at f=535), so a 2 px test there
# measures the ground truth, not the features (docs/features.md).
GOOD_GT_PAIRS = (75, 145, 155)


def test_real_weights_match_tum_teddy_consistently_with_ground_truth(real_weights, tum_teddy, device):
    from slam.bench_features import _poses_at
    from slam.io import open_sequence

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "tum_fr3_mono.yaml")
    sequence = open_sequence(tum_teddy, config)
    poses, valid = _poses_at(sequence.groundtruth, sequence.timestamps)
    extractor = SuperPointExtractor(real_weights, n_features=1000, device=device)
    for i in GOOD_GT_PAIRS:
        assert valid[i] and valid[i + 5]
        f1, f2 = extractor.extract_batch([sequence.load(i).gray, sequence.load(i + 5).gray])
        m = match_brute_force(f1.descriptors, f2.descriptors, ratio=None, mutual=True)
        assert len(m) > 120
        T_21 = np.linalg.inv(poses[i + 5]) @ poses[i]
        errors = _epipolar_errors(f1.keypoints[m.idx1], f2.keypoints[m.idx2], T_21, sequence.camera.K)
        assert np.mean(errors < 2.0) > 0.7, (i, np.mean(errors < 2.0))
