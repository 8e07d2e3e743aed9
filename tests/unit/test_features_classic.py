"""Classical extractors on generated images: ORB's spread, SIFT / RootSIFT descriptors, the registry, and
that the ORB path never loads torch."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from slam.config import FeaturesConfig
from slam.errors import SlamInputError
from slam.features import EXTRACTORS, create_extractor, extract_batch
from slam.features.orb import OrbExtractor, fast_corners
from slam.features.sift import SiftExtractor


def _uneven_texture(seed=0, shape=(480, 640), low=0.8):
    """Random texture whose contrast falls from 1 (right) to `low` (left)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 4, shape[1] // 4)).astype(np.float32)
    texture = cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    contrast = np.linspace(low, 1.0, shape[1])[None, :]
    return np.clip(128 + contrast * (texture - 128), 0, 255).astype(np.uint8)


def _cell_counts(keypoints: np.ndarray, shape, n=4) -> np.ndarray:
    rows = np.clip((keypoints[:, 1] * n // shape[0]).astype(int), 0, n - 1)
    cols = np.clip((keypoints[:, 0] * n // shape[1]).astype(int), 0, n - 1)
    return np.bincount(rows * n + cols, minlength=n * n)


@pytest.mark.parametrize("seed", [0, 1])
def test_orb_spreads_keypoints_over_the_image(seed):
    image = _uneven_texture(seed)
    features = OrbExtractor(n_features=500).extract(image)
    plain = np.array([k.pt for k in cv2.ORB_create(nfeatures=500).detect(image, None)])
    ours, theirs = _cell_counts(features.keypoints, image.shape), _cell_counts(plain, image.shape)
    assert len(features) == 500
    assert np.count_nonzero(ours) >= 14
    # OpenCV's ORB alone keeps the strongest corners, crowding the high-contrast cells.
    assert ours.max() < 0.8 * theirs.max()


@pytest.mark.parametrize("shape", [(480, 640), (376, 1241)])
def test_orb_keypoints_are_opencvs_corners_and_descriptors_whatever_the_threads(shape):
    """Levels extracted apart (in parallel) give what OpenCV's multi-level ORB gives for the same corners: every
    keypoint kept is one of its FAST corners (coordinates, level, angle, score bit for bit) with its descriptor;
    the thread count changes nothing."""
    image = _uneven_texture(3, shape)
    results = [OrbExtractor(n_features=1000, threads=t).extract_batch([image, image[:, ::-1].copy()]) for t in (1, 3)]
    for ours, other in zip(*results):
        for name in ("keypoints", "octave", "angle", "response", "descriptors"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(other, name))
    ours = results[0][0]
    assert len(ours) == 1000
    orb = cv2.ORB_create(nfeatures=1 << 22, scaleFactor=1.2, nlevels=8, edgeThreshold=19, patchSize=31,
                         scoreType=cv2.ORB_FAST_SCORE, fastThreshold=7)
    corners = {(k.pt, k.octave): k for k in orb.detect(image, None)}
    chosen = [corners[(tuple(float(v) for v in pt), int(octave))] for pt, octave in zip(ours.keypoints, ours.octave)]
    keypoints, descriptors = orb.compute(image, chosen)
    assert len(keypoints) == len(chosen)
    np.testing.assert_array_equal([k.angle for k in keypoints], ours.angle)
    np.testing.assert_array_equal([k.response for k in keypoints], ours.response)
    np.testing.assert_array_equal(descriptors, ours.descriptors)


@pytest.mark.parametrize("seed", [0, 1])
def test_orb_binary_tests_are_opencvs_at_any_angle_up_to_the_border(seed):
    """The descriptor kernel (with the test pattern read off OpenCV) against OpenCV's ORB.compute on the same
    keypoints: random positions, the 19-pixel border included, and random angles; sharp and smooth images."""
    from slam.features.orb import _SMOOTHING, _binary_tests, _test_pattern

    rng = np.random.default_rng(seed)
    orb = cv2.ORB_create(nlevels=1, edgeThreshold=19, patchSize=31)
    for image in (_uneven_texture(seed, (240, 320)), rng.integers(0, 256, (120, 160), dtype=np.uint8)):
        h, w = image.shape
        col = np.r_[rng.integers(19, w - 19, 300), 19, w - 20, 19, w - 20]
        row = np.r_[rng.integers(19, h - 19, 300), 19, 19, h - 20, h - 20]
        angle = np.r_[rng.uniform(0, 360, 300), 45, 135, 225, 315].astype(np.float32)
        keypoints = [cv2.KeyPoint(float(x), float(y), 31, float(a), 1.0, 0, i)
                     for i, (x, y, a) in enumerate(zip(col, row, angle))]
        kept, theirs = orb.compute(image, keypoints)
        assert [k.class_id for k in kept] == list(range(len(col)))
        blurred = cv2.sepFilter2D(image, cv2.CV_8U, _SMOOTHING, _SMOOTHING, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_array_equal(_binary_tests(blurred, col, row, angle, *_test_pattern()), theirs)


def _fast_test_images():
    """Random noise, a smooth texture, a checkerboard, flat regions with a few blocks in them (plateaus: equal
    scores side by side), and images too small to hold a corner."""
    rng = np.random.default_rng(7)
    flat = np.full((120, 160), 90, np.uint8)
    for y, x, size, value in ((20, 30, 6, 200), (60, 90, 3, 10), (90, 20, 12, 140), (50, 130, 1, 255)):
        flat[y:y + size, x:x + size] = value
    checker = ((np.indices((96, 128)) // 8).sum(axis=0) % 2 * 180 + 40).astype(np.uint8)
    return [rng.integers(0, 256, (97, 131), dtype=np.uint8), _uneven_texture(4, (150, 200)), checker, flat,
            cv2.resize(rng.integers(0, 256, (12, 16), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_NEAREST),
            rng.integers(0, 256, (7, 7), dtype=np.uint8), rng.integers(0, 256, (9, 40), dtype=np.uint8)]


@pytest.mark.parametrize("threshold", [0, 1, 7, 20, 40, 100, 255])
def test_fast_corners_are_opencvs_bit_for_bit(threshold):
    """The extractor's FAST kernel gives cv2.FastFeatureDetector's corners (non-maximum suppression, 9 of 16):
    the same positions, in the same order, with the same scores; `border` only drops those nearer the edge."""
    detector = cv2.FastFeatureDetector_create(threshold, True, cv2.FAST_FEATURE_DETECTOR_TYPE_9_16)
    for image in _fast_test_images():
        corners = detector.detect(image, None)
        expected = np.array([(*k.pt, k.response) for k in corners], np.float32).reshape(-1, 3)
        for border in (0, 3, 19):
            x, y, score = fast_corners(image, threshold, border)
            assert x.dtype == y.dtype == np.int32 and score.dtype == np.uint8
            h, w = image.shape
            inside = ((expected[:, 0] >= border) & (expected[:, 0] < w - border) & (expected[:, 1] >= border)
                      & (expected[:, 1] < h - border))
            np.testing.assert_array_equal(np.column_stack((x, y, score)).astype(np.float32), expected[inside])
    if threshold in (7, 20):
        assert len(fast_corners(_fast_test_images()[0], threshold)[0]) > 100


def test_fast_corners_refuse_what_opencv_does_not_define():
    image = np.zeros((20, 20), np.uint8)
    for threshold in (-1, 256):
        with pytest.raises(ValueError, match="threshold"):
            fast_corners(image, threshold)
    with pytest.raises(ValueError, match="single-channel uint8"):
        fast_corners(np.zeros((20, 20, 3), np.uint8), 7)


def test_orb_gives_weakly_textured_regions_keypoints_as_orbslam_does():
    """A cell with no corner over the high FAST threshold keeps its low-threshold ones (ORB-SLAM's per-cell
    fallback): a faint half of the image gets keypoints, where OpenCV's ORB (strongest of the whole level) gives
    it almost none. On KITTI this is the road in front of the car, whose near points fix the stereo scale."""
    image = _uneven_texture(5, low=0.08)  # contrast falls to 8% on the left: FAST scores there mostly under 20
    ours = OrbExtractor(n_features=1000).extract(image)
    plain = np.array([k.pt for k in cv2.ORB_create(nfeatures=1000, fastThreshold=20).detect(image, None)])
    faint = image.shape[1] / 4
    assert np.mean(plain[:, 0] < faint) < 0.02
    assert np.mean(ours.keypoints[:, 0] < faint) > 0.1
    assert np.any(ours.response[ours.keypoints[:, 0] < faint] < 20)  # low-threshold corners, kept where needed
    assert np.all(ours.response[ours.keypoints[:, 0] > 3 * faint] >= 7)


def test_sift_and_rootsift_descriptors():
    image = _uneven_texture(1)
    sift = SiftExtractor(n_features=300).extract(image)
    root = SiftExtractor(n_features=300, root=True).extract(image)
    assert sift.descriptors.dtype == np.float32 and sift.descriptors.shape[1] == 128
    np.testing.assert_allclose(np.linalg.norm(sift.descriptors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(root.descriptors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(sift.keypoints, root.keypoints)
    # RootSIFT is the square root of the L1-normalised histogram.
    raw = cv2.SIFT_create(nfeatures=300).detectAndCompute(image, None)[1].astype(np.float64)
    expected = np.sqrt(raw / raw.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(root.descriptors, expected, atol=1e-5)
    assert sift.octave.min() >= 0 and sift.octave.max() <= 7


def test_registry_builds_classical_extractors_and_refuses_unknown_names():
    assert {"orb", "sift", "rootsift", "superpoint", "xfeat"} <= set(EXTRACTORS)
    image = _uneven_texture(2)
    for name, dtype in (("orb", np.uint8), ("sift", np.float32), ("rootsift", np.float32)):
        extractor = create_extractor(FeaturesConfig(type=name, n_features=200))
        features = extract_batch(extractor, [image, image])
        assert features[0].descriptors.dtype == dtype == extractor.descriptor_dtype
        assert features[0].descriptors.shape[1] == extractor.descriptor_size
        np.testing.assert_array_equal(features[0].keypoints, features[1].keypoints)
    with pytest.raises(SlamInputError, match="unknown feature type 'surf'"):
        create_extractor(FeaturesConfig(type="surf"))


def test_orb_path_never_imports_torch():
    code = (
        "import sys, numpy as np\n"
        "import slam.cli, slam.system, slam.runner, slam.bench_features, slam.features.matchers\n"
        "from slam.config import FeaturesConfig\n"
        "from slam.features import create_extractor\n"
        "create_extractor(FeaturesConfig()).extract(np.random.default_rng(0).integers(0, 255, (240, 320), np.uint8))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
