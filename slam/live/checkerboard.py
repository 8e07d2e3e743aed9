"""Checkerboard calibration: find the board, keep only sharp and new views, fit pinhole + distortion.

A view is rejected when no board is found, when the board is blurred (OpenCV's chessboard sharpness:
the width in pixels over which its edges rise from dark to bright), or when it repeats an accepted view.
Repeats are judged on the board's pose, found with a rough focal length: tilting the board in place,
the most informative change for the focal length, moves its corners only a few pixels, while a camera
held still gives many near-copies that would weigh one pose too heavily.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from slam.errors import SlamInputError
from slam.io.calibration import Calibration

MIN_VIEWS = 5
_SB_FLAGS = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY


@dataclass(frozen=True)
class Board:
    cols: int  # inner corners along a row
    rows: int  # inner corners along a column
    square: float  # side of a square, metres

    @staticmethod
    def parse(text: str, square: float) -> Board:
        """'9x6' inner corners and the square size; anything else is a one-line SlamInputError."""
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
        if match is None or min(int(match[1]), int(match[2])) < 2:
            raise SlamInputError(f"expected inner corners as COLSxROWS (e.g. 9x6), got '{text}'", "--board")
        if not square > 0:
            raise SlamInputError(f"the square size must be positive (metres), got {square}", "--square")
        return Board(int(match[1]), int(match[2]), float(square))

    @property
    def pattern(self) -> tuple[int, int]:
        return self.cols, self.rows

    def object_points(self) -> np.ndarray:
        """(cols*rows, 3) float32 corner positions on the board plane (z = 0), row by row."""
        grid = np.mgrid[0 : self.cols, 0 : self.rows].T.reshape(-1, 2)
        return np.hstack([grid * self.square, np.zeros((len(grid), 1))]).astype(np.float32)


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    NO_BOARD = "no board"
    BLURRED = "blurred"
    REPEATED = "repeated"


@dataclass
class ViewSelector:
    """Collects the corners of usable views from the images it is shown."""

    board: Board
    max_blur_px: float = 4.0  # a sharp board measures 1.5-2.5 px; a Gaussian blur of sigma 1.5 about 4
    min_rotation_deg: float = 5.0  # a new view turns the board at least this much from every accepted one,
    min_translation: float = 0.05  # or moves it this fraction of its distance
    image_size: tuple[int, int] | None = None  # (width, height) of every image
    corners: list[np.ndarray] = field(default_factory=list)  # (N,2) float32 per accepted view
    counts: dict[Verdict, int] = field(default_factory=lambda: dict.fromkeys(Verdict, 0))
    _poses: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)

    def add(self, image: np.ndarray, name: str = "image") -> Verdict:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        self._check_size(gray, name)
        verdict, corners = self._judge(gray)
        self.counts[verdict] += 1
        if verdict is Verdict.ACCEPTED:
            self.corners.append(corners)
        return verdict

    def _judge(self, gray: np.ndarray) -> tuple[Verdict, np.ndarray | None]:
        found, corners = cv2.findChessboardCornersSB(gray, self.board.pattern, flags=_SB_FLAGS)
        if not found:
            return Verdict.NO_BOARD, None
        corners = corners.reshape(-1, 2).astype(np.float32)
        if board_blur_px(gray, self.board, corners) > self.max_blur_px:
            return Verdict.BLURRED, corners
        # The detector may number a board from either end: a repeat in either order is a repeat.
        poses = [self._rough_pose(corners), self._rough_pose(corners[::-1])]
        if any(self._close(pose, seen) for pose in poses for seen in self._poses):
            return Verdict.REPEATED, corners
        self._poses.append(poses[0])
        return Verdict.ACCEPTED, corners

    def _rough_pose(self, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Board-to-camera rotation and translation for a nominal camera (about 64 degrees across)."""
        width, height = self.image_size
        f = 0.8 * max(width, height)
        K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
        _ok, rvec, tvec = cv2.solvePnP(self.board.object_points(), corners, K, None, flags=cv2.SOLVEPNP_IPPE)
        return cv2.Rodrigues(rvec)[0], tvec.ravel()

    def _close(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
        cos_angle = np.clip((np.trace(a[0].T @ b[0]) - 1.0) / 2.0, -1.0, 1.0)
        moved = np.linalg.norm(a[1] - b[1]) / max(np.linalg.norm(a[1]), np.linalg.norm(b[1]))
        return np.degrees(np.arccos(cos_angle)) < self.min_rotation_deg and moved < self.min_translation

    def _check_size(self, gray: np.ndarray, name: str) -> None:
        size = (gray.shape[1], gray.shape[0])
        if self.image_size is None:
            self.image_size = size
        elif size != self.image_size:
            raise SlamInputError(
                f"image is {size[0]}x{size[1]}, the first was {self.image_size[0]}x"
                f"{self.image_size[1]}: calibrate one camera mode at a time",
                name,
            )

    def report(self) -> str:
        return ", ".join(f"{n} {v.value}" for v, n in self.counts.items())


def board_blur_px(gray: np.ndarray, board: Board, corners: np.ndarray) -> float:
    """Mean edge rise width (pixels) across the board's squares: about 1-2 for a sharp image."""
    (mean_rise, *_), _per_edge = cv2.estimateChessboardSharpness(gray, board.pattern, corners.reshape(-1, 1, 2))
    return float(mean_rise)


@dataclass(frozen=True)
class CalibrationResult:
    calibration: Calibration
    rms_px: float  # RMS reprojection error over all corners of all views used
    views: int
    view_rms_px: np.ndarray  # (views,) per-view RMS, to spot a bad view


def calibrate(selector: ViewSelector, fix_k3: bool = True) -> CalibrationResult:
    """Fit fx, fy, cx, cy and k1 k2 p1 p2 (+ k3 unless fixed) to the accepted views."""
    views = len(selector.corners)
    if views < MIN_VIEWS:
        raise SlamInputError(
            f"only {views} usable views ({selector.report()}); need at least {MIN_VIEWS}: "
            "show the board at more positions and angles",
            "calibration",
        )
    objects = [selector.board.object_points()] * views
    images = [c.reshape(-1, 1, 2) for c in selector.corners]
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(objects, images, selector.image_size, None, None, flags=flags)
    dist = dist.ravel()[: 4 if fix_k3 else 5]
    width, height = selector.image_size
    calibration = Calibration(
        float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), width, height, tuple(float(d) for d in dist)
    )
    per_view = np.array([_view_rms(o, c, r, t, K, dist) for o, c, r, t in zip(objects, images, rvecs, tvecs)])
    return CalibrationResult(calibration, float(rms), views, per_view)


def _view_rms(obj: np.ndarray, corners: np.ndarray, rvec, tvec, K: np.ndarray, dist: np.ndarray) -> float:
    projected, _ = cv2.projectPoints(obj, rvec, tvec, K, dist)
    return float(np.sqrt(np.mean(np.sum((projected - corners).reshape(-1, 2) ** 2, axis=1))))
