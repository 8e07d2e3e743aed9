"""The viewer: snapshots of a running system, a live open3d + OpenCV window, off-screen recording.

Snapshots (plain numpy arrays, `snapshot.py`) cross a drop-oldest queue (`channel.py`) to a viewer process
(`live.py` or `record.py`) that `session.py` starts for the runner, so a slow or dead viewer never slows
tracking. Nothing is imported here, so `slam --help` stays instant; open3d is imported only where it draws.
"""
