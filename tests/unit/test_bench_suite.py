"""slam bench: SUITE.yaml parsing (one-line errors), the job plan, the default and core suites, targets,
synthetic sequences, failed runs, the Markdown section."""

from __future__ import annotations

from pathlib import Path

import pytest

from slam.bench.command import BenchOutcome
from slam.bench.jobs import Job, RunRecord, collect, plan_jobs, with_derived_metrics
from slam.bench.report import END_MARKER, START_MARKER, format_section, replace_section, update_markdown
from slam.bench.results import aggregate, build_cells
from slam.bench.suite import load_suite
from slam.cli import main
from slam.errors import SlamInputError
from slam.synthetic import is_complete

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "synthetic_rgbd.yaml"

GOOD = f"""
runs: 2
timeout_s: 60
sequences:
  - name: syn
    data: synthetic/orbit
    config: {CONFIG}
    mode: rgbd
    max_frames: 20
  - name: syn_stereo
    data: synthetic/stereo
    config: {REPO / "configs" / "synthetic_stereo.yaml"}
    mode: stereo
methods:
  - name: ours
    overrides: [mapping.threaded=false]
  - name: o3d
    peer: open3d_rgbd
"""


# GOOD with what the core benchmark needs: targets and a note on a sequence, the suite's own section and title.
TARGETED = GOOD.replace(
    "    max_frames: 20\n",
    "    max_frames: 20\n    targets: [ate_rmse_m <= 0.005, 'fps >= 25', tracked_fraction>=1]\n    note: exact depth\n",
).replace("runs: 2\n", "runs: 2\nsection: core-test\ntitle: Core test\n")


def write_suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_good_suite_parses_into_dataclasses(tmp_path):
    suite = load_suite(write_suite(tmp_path, GOOD))
    assert suite.runs == 2 and suite.timeout_s == 60.0
    assert [s.name for s in suite.sequences] == ["syn", "syn_stereo"]
    assert suite.sequences[0].config == CONFIG.resolve() and suite.sequences[0].max_frames == 20
    assert suite.methods[0].peer is None and suite.methods[0].overrides == ("mapping.threaded=false",)
    assert suite.methods[1].peer == "open3d_rgbd"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("runs: 2", "runs: 0", "runs must be a positive integer"),
        ("timeout_s: 60", "timeout_s: -1", "timeout_s must be a positive number"),
        ("    mode: rgbd\n", "    mode: depth\n", "sequences[0].mode must be one of"),
        ("    mode: stereo\n", "    mode: rgbd\n", "mode is 'rgbd' but synthetic_stereo.yaml"),
        ("synthetic/orbit", "/abs/orbit", "sequences[0].data must be relative to --data-root"),
        ("peer: open3d_rgbd", "peer: orbslam9", "methods[1].peer must be one of"),
        ("[mapping.threaded=false]", "[mapping.nope=1]", "unknown config key 'mapping.nope'"),
        ("[mapping.threaded=false]", "mapping.threaded=false", "overrides must be a list"),
        ("  - name: o3d", "  - name: ours", "methods: name 'ours' is used twice"),
        ("  - name: o3d", "  - name: 'a b'", "methods[1].name must be letters"),
        ("    max_frames: 20", "    max_frames: many", "max_frames must be a positive integer"),
        ("runs: 2", "runs: 2\nrepeat: 3", "unknown key 'repeat'"),
        ("sequences:", "sequences: []\nunused:", "unknown key 'unused'"),
        ("methods:\n", "methods: 3\nx:\n", "unknown key 'x'"),
        ("  - name: syn\n", "  - 7\n  - name: syn\n", "sequences[0] must be a mapping"),
        ("runs: 2", "runs: [2", "invalid YAML"),
        ("ate_rmse_m <= 0.005", "ate_rmse_m < 0.005", "targets[0] must be 'metric <= bound' or 'metric >= bound'"),
        ("ate_rmse_m <= 0.005", "ate_rmse_m <= 1e", "targets[0] must be"),
        ("tracked_fraction>=1", "tracked_fraction>=inf", "targets[2] must be"),
        ("[ate_rmse_m <= 0.005, 'fps >= 25', tracked_fraction>=1]", "7", "targets must be a list"),
        ("    note: exact depth", "    note: ''", "note must be a non-empty string"),
        ("section: core-test", "section: 'a b'", "section must be letters"),
        ("    data: synthetic/orbit\n", "", "sequences[0] needs exactly one of 'data' and 'synthetic'"),
        ("    data: synthetic/orbit\n", "    data: x\n    synthetic: {frames: 3}\n", "needs exactly one of"),
        ("    data: synthetic/orbit\n", "    synthetic: {frames: 0}\n", "synthetic.frames must be a positive integer"),
        ("    data: synthetic/orbit\n", "    synthetic: {frames: 3, seed: -1}\n", "seed must be a non-negative"),
        ("    data: synthetic/orbit\n", "    synthetic: {frames: 3, trajectory: x}\n", "trajectory must be one of"),
        ("    data: synthetic/orbit\n", "    synthetic: {frames: 3, width: 64}\n", "unknown key 'width'"),
        ("    data: synthetic/orbit\n", "    synthetic: {frames: 3, fps: 0}\n", "synthetic.fps must be a number"),
        ("    data: synthetic/orbit\n", "    synthetic: orbit\n", "synthetic must be a mapping"),
    ],
)
def test_bad_suites_give_one_line_naming_the_file(tmp_path, old, new, expected):
    assert old in TARGETED
    path = write_suite(tmp_path, TARGETED.replace(old, new, 1))
    with pytest.raises(SlamInputError) as info:
        load_suite(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_config_and_missing_suite(tmp_path):
    with pytest.raises(SlamInputError, match="config: file not found"):
        load_suite(write_suite(tmp_path, GOOD.replace(str(CONFIG), "nowhere.yaml")))
    with pytest.raises(SlamInputError, match="suite file not found"):
        load_suite(tmp_path / "absent.yaml")


def test_cli_reports_a_bad_suite_in_one_line_with_status_2(tmp_path, capsys):
    path = write_suite(tmp_path, GOOD.replace("runs: 2", "runs: -3"))
    assert main(["bench", str(path), "--data-root", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("slam bench: error: ") and "runs must be a positive integer" in err
    assert len(err.splitlines()) == 1


def test_plan_skips_peers_outside_their_modes(tmp_path):
    suite = load_suite(write_suite(tmp_path, GOOD))
    jobs, skips = plan_jobs(suite, tmp_path / "data", tmp_path / "out")
    assert [(j.sequence, j.method, j.run) for j in jobs] == [
        ("syn", "ours", 1), ("syn", "ours", 2), ("syn", "o3d", 1), ("syn", "o3d", 2),
        ("syn_stereo", "ours", 1), ("syn_stereo", "ours", 2),
    ]  # fmt: skip
    assert [(s.sequence, s.method) for s in skips] == [("syn_stereo", "o3d")]
    first = jobs[0]
    assert first.data == str((tmp_path / "data" / "synthetic" / "orbit").resolve())
    assert first.config_text == CONFIG.read_text() and first.max_frames == 20
    assert Path(first.out_dir) == (tmp_path / "out" / "runs" / "syn" / "ours" / "run-1").resolve()
    assert len({j.out_dir for j in jobs}) == len(jobs)


def test_default_suite_loads_and_covers_every_shared_chunk():
    suite = load_suite(REPO / "configs" / "bench" / "default.yaml")
    data = {s.data for s in suite.sequences}
    assert {"tum/rgbd_dataset_freiburg3_teddy", "kitti/sequences/06", "kitti/sequences/07", "euroc/V1_01_easy"} <= data
    ours = [m for m in suite.methods if m.peer is None]
    assert len(ours) == 2 and {m.overrides for m in ours} == {(), ("loop_closing.enabled=false",)}
    assert {m.peer for m in suite.methods} >= {"open3d_rgbd", "orb_pnp"}


def test_section_replaces_only_its_markers(tmp_path):
    suite = load_suite(write_suite(tmp_path, GOOD))
    jobs, skips = plan_jobs(suite, tmp_path, tmp_path / "out")
    records = [RunRecord(j.sequence, j.method, j.run, "failed", error=f"exit 2: no data for {j.sequence}")
               for j in jobs]  # fmt: skip
    header = {"date": "now", "machine": {"platform": "p", "cpu_count": 2, "python": "3.11"}, "command": "c",
              "executor": "local"}  # fmt: skip
    section = format_section(build_cells(suite, records, skips), header)
    assert section.startswith(START_MARKER) and section.endswith(END_MARKER)
    assert "| syn | rgbd | ours | 0/2 | n/a |" in section and "FAILED" in section
    assert "skipped: open3d_rgbd runs in rgbd only" in section
    assert "- syn / ours run 1: exit 2: no data for syn" in section
    doc = tmp_path / "doc.md"
    doc.write_text(f"# title\n\nkeep me\n\n{START_MARKER}\nold\n{END_MARKER}\n\ntail\n")
    update_markdown(doc, section)
    text = doc.read_text()
    assert text.startswith("# title\n\nkeep me\n\n") and text.endswith("\n\ntail\n") and "old" not in text
    assert replace_section("intro\n", "S") == "intro\n\nS\n"
    with pytest.raises(ValueError, match="unbalanced"):
        replace_section(f"{END_MARKER}\n{START_MARKER}", "S")


# ---- targets, synthetic sequences and the section a suite writes (what the core benchmark needs) ----------

def test_targets_are_checked_on_the_medians_of_successful_runs(tmp_path):
    suite = load_suite(write_suite(tmp_path, TARGETED))
    assert [t.describe() for t in suite.sequences[0].targets] == [
        "ate_rmse_m <= 0.005", "fps >= 25", "tracked_fraction >= 1"]  # fmt: skip
    assert suite.sequences[0].note == "exact depth" and (suite.section, suite.title) == ("core-test", "Core test")
    jobs, skips = plan_jobs(suite, tmp_path, tmp_path / "out")

    def record(job, ate, fps, status="ok"):
        metrics = with_derived_metrics({"ate_rmse_m": ate, "fps": fps, "frames": 20, "tracked_frames": 20})
        return RunRecord(job.sequence, job.method, job.run, status, metrics=metrics if status == "ok" else {})

    ours = [j for j in jobs if (j.sequence, j.method) == ("syn", "ours")]
    o3d = [j for j in jobs if (j.sequence, j.method) == ("syn", "o3d")]
    records = [record(ours[0], 0.004, 24.0), record(ours[1], 0.005, 30.0)]  # medians: ATE 0.0045, fps 27
    records += [record(o3d[0], 0.001, 30.0), record(o3d[1], 0.0, 0.0, "failed")]  # one run failed
    cells = {(c.sequence, c.method): c for c in build_cells(suite, records, skips)}
    good, partial = cells["syn", "ours"], cells["syn", "o3d"]
    assert [(c["metric"], c["median"], c["met"]) for c in good.checks] == [
        ("ate_rmse_m", pytest.approx(0.0045), True), ("fps", 27.0, True), ("tracked_fraction", 1.0, True)]  # fmt: skip
    assert good.targets_met
    assert all(c["met"] for c in partial.checks) and not partial.targets_met  # medians fine, but a run failed
    missing = build_cells(suite, [record(ours[0], 0.006, 30.0), record(ours[1], 0.008, 20.0)], skips)[0]
    assert [c["met"] for c in missing.checks] == [False, True, True] and not missing.targets_met  # bounds inclusive
    no_metric = build_cells(suite, [RunRecord("syn", "ours", 1, "ok", metrics={"fps": 30.0})], skips)[0]
    assert no_metric.checks[0]["median"] is None and not no_metric.checks[0]["met"]  # a missing metric fails
    assert cells["syn_stereo", "ours"].checks == [] and cells["syn_stereo", "ours"].targets_met  # no targets
    outcome = BenchOutcome([good, missing, cells["syn_stereo", "ours"]], "", tmp_path, [], suite.section)
    assert (outcome.targets_missed, outcome.failed_runs) == (1, 0)  # `slam bench` exits 1 on either

    header = {"date": "now", "machine": {"platform": "p", "cpu_count": 2, "python": "3.11"}, "command": "c",
              "executor": "local"}  # fmt: skip
    section = format_section([good, partial, missing], header, suite)
    assert section.startswith("<!-- core-test:start -->\n### Core test\n")
    assert section.endswith("<!-- core-test:end -->")
    assert "- syn / ours: met (ate_rmse_m <= 0.005, fps >= 25, tracked_fraction >= 1)" in section
    assert "- syn / o3d: MISSED: FAILED 1 of 2 (met: ate_rmse_m <= 0.005" in section
    assert "- syn / ours: MISSED: ate_rmse_m 0.007, not <= 0.005; fps 25, not >= 25" not in section  # 25 >= 25
    assert "- syn / ours: MISSED: ate_rmse_m 0.007, not <= 0.005 (met: fps >= 25, tracked_fraction >= 1)" in section
    assert "- syn: exact depth" in section
    assert "Published figures" in section  # a peer ran beside us
    assert "Published figures" not in format_section([good], header, suite)

    doc = tmp_path / "doc.md"
    doc.write_text(f"{START_MARKER}\nsuite\n{END_MARKER}\n<!-- core-test:start -->\nold\n<!-- core-test:end -->\n")
    update_markdown(doc, section, suite.section)
    assert doc.read_text() == f"{START_MARKER}\nsuite\n{END_MARKER}\n{section}\n"  # the other section is kept


def test_derived_tracking_fractions():
    metrics = with_derived_metrics({"frames": 160, "tracked_frames": 140, "initialized_frame": 10, "config": {}})
    assert metrics["tracked_fraction"] == pytest.approx(140 / 160)
    assert metrics["tracked_after_init"] == pytest.approx(140 / 150)  # from the frame the map started at
    assert "config" not in metrics
    for start in (-1, None, 5):  # never initialised, a peer without the notion, past the last frame
        run = {"frames": 5, "tracked_frames": 0, "initialized_frame": start}
        assert "tracked_after_init" not in with_derived_metrics(run)


def test_aggregate_median_and_spread():
    runs = [
        {"ate_rmse_m": 0.003, "fps": 30.0, "frames": 100, "mode": "rgbd", "local_ba_ms_mean": None},
        {"ate_rmse_m": 0.001, "fps": 10.0, "frames": 100, "mode": "rgbd", "local_ba_ms_mean": 5.0},
        {"ate_rmse_m": 0.002, "fps": 26.0, "frames": 100, "mode": "rgbd", "local_ba_ms_mean": 7.0,
         "flag": True, "loops": [1], "rpe_trans_m": float("nan")},
    ]  # fmt: skip
    s = aggregate(runs)
    assert s["ate_rmse_m"] == {"median": 0.002, "min": 0.001, "max": 0.003, "n": 3}
    assert s["fps"] == {"median": 26.0, "min": 10.0, "max": 30.0, "n": 3}
    assert s["local_ba_ms_mean"] == {"median": 6.0, "min": 5.0, "max": 7.0, "n": 2}  # None skipped
    assert not {"mode", "flag", "loops", "rpe_trans_m"} & set(s)  # strings, bools, lists, NaN skipped


def test_a_run_without_a_readable_run_json_or_status_0_is_failed(tmp_path):
    def finished(name, code, run_json=None):
        job = Job("s", "m", 1, "rgbd", "data", "c.yaml", "", str(tmp_path / name), 60.0)
        (tmp_path / name).mkdir()
        if run_json is not None:
            (tmp_path / name / "run.json").write_text(run_json)
        return collect(job, code, "slam: loading\nerror: boom\n", 1.0)

    assert finished("ok", 0, '{"frames": 5, "tracked_frames": 5}').status == "ok"
    missing, garbled = finished("missing", 0), finished("garbled", 0, "{not json")
    crashed, timed_out = finished("crashed", 1, '{"frames": 5}'), finished("timed_out", None)
    assert [r.status for r in (missing, garbled, crashed, timed_out)] == ["failed"] * 4
    assert crashed.error == "exit 1: error: boom" and timed_out.error == "timed out after 60 s"


def test_core_suite_has_every_case_and_its_targets():
    suite = load_suite(REPO / "configs" / "bench" / "core.yaml")
    cases = {s.name: s for s in suite.sequences}
    assert list(cases) == ["synthetic_rgbd_300", "tum_fr3_teddy_rgbd", "kitti_06_stereo", "euroc_v101_stereo",
                           "synthetic_mono_300", "tum_fr3_teddy_mono", "kitti_07_mono"]  # fmt: skip
    bounds = {name: {t.metric: (t.op, t.bound) for t in s.targets} for name, s in cases.items()}
    assert bounds["synthetic_rgbd_300"] == {"ate_rmse_m": ("<=", 0.005), "tracked_fraction": (">=", 1.0)}
    assert bounds["tum_fr3_teddy_rgbd"] == {"ate_rmse_m": ("<=", 0.007), "tracked_fraction": (">=", 1.0),
                                            "fps": (">=", 25.0), "tracking_ms_p50": ("<=", 25.0),
                                            "peak_rss_mb": ("<=", 800.0)}  # fmt: skip
    assert bounds["kitti_06_stereo"] == {"ate_rmse_m": ("<=", 0.18), "tracked_fraction": (">=", 1.0)}
    assert bounds["euroc_v101_stereo"] == {} and cases["euroc_v101_stereo"].note
    # Issue #4's monocular targets (Sim(3) ATE).
    assert bounds["synthetic_mono_300"] == {"ate_rmse_m": ("<=", 0.01), "tracked_fraction": (">=", 0.95)}
    assert bounds["tum_fr3_teddy_mono"] == {"ate_rmse_m": ("<=", 0.015), "tracked_fraction": (">=", 0.9)}
    assert bounds["kitti_07_mono"] == {"ate_rmse_m": ("<=", 0.35), "tracked_after_init": (">=", 0.95)}
    assert all(s.max_frames is None for s in suite.sequences)
    assert cases["synthetic_rgbd_300"].synthetic == cases["synthetic_mono_300"].synthetic
    assert (cases["synthetic_rgbd_300"].synthetic.frames, cases["synthetic_rgbd_300"].synthetic.seed) == (300, 0)
    assert [(m.name, m.peer, m.overrides) for m in suite.methods] == [("ours", None, ())]
    assert suite.section == "core-benchmark"
    assert "<!-- core-benchmark:start -->" in (REPO / "docs" / "benchmarks.md").read_text()


def test_a_synthetic_sequence_is_rendered_once_before_the_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    text = TARGETED.replace("    data: synthetic/orbit\n", "    synthetic: {frames: 3, seed: 2}\n")
    suite = load_suite(write_suite(tmp_path, text))
    jobs, _ = plan_jobs(suite, tmp_path / "data", tmp_path / "out")
    syn = [j for j in jobs if j.sequence == "syn"]
    folder = Path(syn[0].data)
    assert len({j.data for j in syn}) == 1 and folder.is_relative_to(tmp_path / "cache")
    assert is_complete(folder) and len(list((folder / "rgb").iterdir())) == 3
    stamp = (folder / "rgb").stat().st_mtime_ns
    assert Path(plan_jobs(suite, tmp_path / "data", tmp_path / "out")[0][0].data) == folder
    assert (folder / "rgb").stat().st_mtime_ns == stamp  # found in the cache, not rendered again
    stereo = [j for j in jobs if j.sequence == "syn_stereo"]
    assert stereo[0].data == str((tmp_path / "data" / "synthetic" / "stereo").resolve())


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "bench").glob("*.yaml")), ids=lambda p: p.name)
def test_every_packaged_suite_loads(path):
    """A packaged suite whose config, mode or target is wrong fails here, not after minutes of runs."""
    suite = load_suite(path)
    assert suite.sequences and suite.methods


def test_realtime_suite_asks_for_a_stream_kept_up_with():
    suite = load_suite(REPO / "configs" / "bench" / "realtime.yaml")
    assert {s.mode for s in suite.sequences} == {"rgbd", "stereo", "mono"}
    assert all(s.synthetic is not None for s in suite.sequences)
    turns = [s for s in suite.sequences if s.synthetic.trajectory == "turn"]
    assert [(s.mode, s.synthetic.fps) for s in turns] == [("mono", 10.0)]  # the sharp turn at a car's rate
    streams = [s for s in suite.sequences if s not in turns]
    assert {s.mode for s in streams} == {"rgbd", "stereo", "mono"}
    for s in streams:
        assert s.synthetic.frames == 1000 and s.synthetic.fps == 30.0
        bounds = {t.metric: (t.op, t.bound) for t in s.targets}
        # 33.3 s of video: the whole run within 10% of it, p95 within 1.5 frame periods.
        assert bounds["run_wall_s"] == ("<=", 36.7) and bounds["tracking_ms_p95"] == ("<=", 45.0)
