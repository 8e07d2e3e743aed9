"""`slam bench`: a suite of sequences x methods, N independent runs each, scored by one evaluation.

- `suite`: the SUITE.yaml schema, parsed into dataclasses (bad suites give one line).
- `jobs`: one run as a picklable Job; `run_job` runs it in a fresh subprocess (`child`) with a timeout.
- `executors`: the same `run_job` in a local pool (`--workers K`) or on a Ray cluster (`--ray [ADDRESS]`).
- `peers`: other methods producing a TUM trajectory from the same frames (Open3D RGB-D odometry, ORB + PnP).
- `results`, `report`, `plots`, `published`: results.json, the Markdown section, the figures, and the
  published figures of other systems (a separate table: full sequences, not the same work).
"""
