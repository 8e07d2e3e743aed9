"""ORB-SLAM3 driver for the `orbslam3` benchmark peer: runs ORB-SLAM3 (the pyorbslam3 wheel) on frames it is sent.

Standalone on purpose: it runs under the peer's own Python (a separate venv with pyorbslam3; ORB-SLAM3 is
GPLv3 and is never imported by the `slam` package), is executed by path, and imports only the standard
library, numpy and pyorbslam3.

Protocol. Requests arrive on stdin, each a 4-byte little-endian length, a JSON header of that length, then
the raw bytes of the arrays the header lists (`arrays`: [{"dtype", "shape"}, ...]). Each request gets one
JSON line in reply on the original stdout; fd 1 itself is pointed at stderr first, so that ORB-SLAM3's own
printing cannot mix with the replies.

    {"cmd": "init", "mode": "rgbd"|"stereo"|"mono", "vocabulary": PATH, "settings": PATH}
        -> {"ok": true, "load_s": seconds}
         | {"ok": false, "unavailable": msg} (pyorbslam3 missing) | {"ok": false, "error": msg}
    {"cmd": "track", "t": seconds, arrays: rgbd [image, depth metres float32] | stereo [left, right] | mono [image]}
        -> {"ok": true, "state": ORB-SLAM3 tracking state, "tracked": state == OK, "ms": time inside the track call}
    {"cmd": "finish", "trajectory": PATH}
        -> {"ok": true, "poses": n, "keyframes": keyframes in the final map, "peak_rss_mb": this process's peak
            resident memory (MiB)}

`finish` shuts ORB-SLAM3 down (local mapping and loop closing finish) and writes every localised frame of
its final map as a TUM trajectory. ORB-SLAM3's SaveTrajectoryTUM refuses monocular runs, so the EuRoC-format
all-frames file (same poses, timestamps in ns, largest map only) is written and converted to TUM.
"""

import json
import os
import resource
import struct
import sys
import time

import numpy as np


def _read_exact(stream, n):
    data = bytearray()
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _read_request(stream):
    size = _read_exact(stream, 4)
    if size is None:
        return None, []
    header = json.loads(_read_exact(stream, struct.unpack("<I", size)[0]).decode())
    arrays = []
    for spec in header.get("arrays", []):
        dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
        raw = _read_exact(stream, int(np.prod(shape)) * dtype.itemsize)
        arrays.append(np.frombuffer(raw, dtype).reshape(shape))
    return header, arrays


def _peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _count_lines(path):
    """Non-empty, non-comment lines of a text file (0 when ORB-SLAM3 wrote none)."""
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip() and not line.startswith("#"))


def _euroc_to_tum(src, dst):
    """ORB-SLAM3's EuRoC-format trajectory (ns, tx ty tz qx qy qz qw) as TUM (s, same pose); pose count."""
    lines = []
    with open(src) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 8 and not line.startswith("#"):
                lines.append(" ".join([f"{float(parts[0]) * 1e-9:.9f}"] + parts[1:]))
    with open(dst, "w") as f:
        f.write("# timestamp tx ty tz qx qy qz qw (ORB-SLAM3, every localised frame)\n")
        f.write("".join(line + "\n" for line in lines))
    return len(lines)


def main():
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # ORB-SLAM3 prints to stdout: send that to stderr (the log), keep the replies clean

    def reply(**fields):
        replies.write(json.dumps(fields) + "\n")
        replies.flush()

    stream = sys.stdin.buffer
    slam, mode = None, None
    while True:
        header, arrays = _read_request(stream)
        if header is None:
            return 0 if slam is None else 1  # the caller went away before `finish`
        cmd = header.get("cmd")
        try:
            if cmd == "init":
                try:
                    import pyorbslam3
                except ImportError as exc:
                    reply(ok=False, unavailable=f"pyorbslam3 cannot be imported by {sys.executable}: {exc}")
                    return 3
                mode = header["mode"]
                sensor = {
                    "rgbd": pyorbslam3.Sensor.RGBD,
                    "stereo": pyorbslam3.Sensor.STEREO,
                    "mono": pyorbslam3.Sensor.MONOCULAR,
                }[mode]
                t0 = time.perf_counter()
                slam = pyorbslam3.Slam(header["vocabulary"], header["settings"], sensor, use_viewer=False)
                reply(ok=True, load_s=time.perf_counter() - t0)
            elif cmd == "track":
                t = float(header["t"])
                t0 = time.perf_counter()
                if mode == "rgbd":
                    result = slam.track_rgbd(arrays[0], arrays[1], t)
                elif mode == "stereo":
                    result = slam.track_stereo(arrays[0], arrays[1], t)
                else:
                    result = slam.track_monocular(arrays[0], t)
                ms = (time.perf_counter() - t0) * 1000.0
                state = int(result.state)
                reply(ok=True, state=state, tracked=state == int(pyorbslam3.TrackingState.OK), ms=ms)
            elif cmd == "finish":
                slam.shutdown()
                path = header["trajectory"]
                raw = path + ".euroc.txt"
                slam.save_trajectory_euroc(raw)
                poses = _euroc_to_tum(raw, path) if os.path.isfile(raw) else 0
                if os.path.isfile(raw):
                    os.remove(raw)
                keyframes_path = path + ".keyframes.txt"  # one line per keyframe left in the map (not culled)
                slam.save_keyframe_trajectory_tum(keyframes_path)
                keyframes = _count_lines(keyframes_path)
                reply(ok=True, poses=poses, keyframes=keyframes, peak_rss_mb=_peak_rss_mb())
                return 0
            else:
                reply(ok=False, error=f"unknown command {cmd!r}")
                return 2
        except Exception as exc:  # one line back to the caller; the traceback goes to the log
            import traceback

            traceback.print_exc()
            reply(ok=False, error=f"{type(exc).__name__}: {exc}")
            return 1


if __name__ == "__main__":
    sys.exit(main())
