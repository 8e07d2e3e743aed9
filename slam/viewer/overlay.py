"""The current image with its tracked features and a status bar (the live camera window, recorded frames)."""

from __future__ import annotations

import cv2
import numpy as np

from slam.viewer.snapshot import Snapshot

# BGR
INLIER_BGR = (60, 220, 60)
OUTLIER_BGR = (40, 40, 255)
OTHER_BGR = (200, 150, 60)
_BAR = 46  # status bar height, pixels
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def annotate(snapshot: Snapshot, note: str = "") -> np.ndarray:
    """(H,W,3) uint8 BGR: other keypoints as small dots, inliers and outliers as rings, counts on top."""
    image = _as_bgr(snapshot.image)
    kp = np.round(snapshot.keypoints).astype(np.int32)
    if len(kp) == len(snapshot.inliers) == len(snapshot.outliers):
        other = ~(snapshot.inliers | snapshot.outliers)
        for u, v in kp[other]:
            cv2.circle(image, (int(u), int(v)), 1, OTHER_BGR, -1, cv2.LINE_8)
        for mask, color in ((snapshot.outliers, OUTLIER_BGR), (snapshot.inliers, INLIER_BGR)):
            for u, v in kp[mask]:
                cv2.circle(image, (int(u), int(v)), 3, color, 1, cv2.LINE_8)
    _status(image, snapshot, note)
    return image


def status_lines(snapshot: Snapshot, note: str = "") -> tuple[str, str]:
    fps = f"{snapshot.fps:.1f} fps" if np.isfinite(snapshot.fps) else "- fps"
    state = (snapshot.state or "-").upper()
    first = f"{state}  frame {snapshot.frame_index}  {fps}" + (f"  {note}" if note else "")
    second = (
        f"inliers {int(snapshot.inliers.sum())}  outliers {int(snapshot.outliers.sum())}  "
        f"keyframes {snapshot.n_keyframes}  points {snapshot.n_points}"
    )
    return first, second


def _status(image: np.ndarray, snapshot: Snapshot, note: str) -> None:
    bar = image[:_BAR]
    bar[:] = (bar.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken so the text reads on any image
    for row, text in enumerate(status_lines(snapshot, note)):
        cv2.putText(image, text, (8, 18 + 20 * row), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def _as_bgr(image: np.ndarray | None) -> np.ndarray:
    if image is None:
        return np.zeros((480, 640, 3), np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image.copy()
