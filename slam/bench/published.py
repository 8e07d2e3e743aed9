"""Published accuracy of other systems, with where each figure was printed.

These are full-sequence results from the authors' papers, on other machines and, for some, with other
alignment: they are context, not a comparison with the short chunks `slam bench` runs. A figure that could
not be traced to a source is left out rather than filled in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    key: str
    citation: str


@dataclass(frozen=True)
class PublishedFigure:
    system: str
    sequence: str  # the full benchmark sequence
    mode: str
    ate_rmse_m: float
    source: str  # a Source key


SOURCES = (
    Source(
        "droid-supp",
        "Z. Teed, J. Deng, DROID-SLAM: Deep Visual SLAM for Monocular, Stereo, and RGB-D "
        "Cameras, NeurIPS 2021, supplementary material, Table 1 (stereo EuRoC, ATE RMSE in m; "
        "the ORB-SLAM2 / ORB-SLAM3 rows are as reported there)",
    ),
)

FIGURES = (
    PublishedFigure("ORB-SLAM2", "EuRoC V1_01_easy (whole)", "stereo", 0.035, "droid-supp"),
    PublishedFigure("ORB-SLAM3", "EuRoC V1_01_easy (whole)", "stereo", 0.035, "droid-supp"),
    PublishedFigure("DROID-SLAM", "EuRoC V1_01_easy (whole)", "stereo", 0.037, "droid-supp"),
)

NOT_FOUND = (
    "DPVO, pySLAM, and the other sequences (TUM fr3 teddy, KITTI 06 / 07): no figure could be traced "
    "to a source readable here, so none is shown."
)
