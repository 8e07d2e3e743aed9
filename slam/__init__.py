"""slam: visual SLAM and odometry (monocular, stereo, RGB-D) with evaluation built in."""

__version__ = "0.1.0"
