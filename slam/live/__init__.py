"""Live input: a capture thread that always hands tracking the newest frame (`slam live`), recording of
the stream as a replayable folder, and checkerboard calibration (`slam calibrate`).

Nothing heavy is imported here, so `slam --help` stays instant.
"""
