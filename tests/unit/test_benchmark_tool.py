"""tools/benchmark_core.py: aggregation, target checks, the Markdown section, failed runs, one tiny real run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark_core.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_core", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def fake_run(bench, tmp_path: Path, index: int, exit_code: int | None = 0, **metrics) -> dict:
    run_dir = tmp_path / f"run-{index}"
    run_dir.mkdir()
    if metrics:
        (run_dir / "run.json").write_text(json.dumps(metrics))
    return bench.collect_run(index, exit_code, run_dir, stderr="slam run: error: boom\n", seconds=1.0)


def fake_results(bench, *cases: dict) -> dict:
    machine = {"platform": "Linux-test", "cpu_count": 2, "cpu_model": "Test CPU", "memory_gib": 8.0,
               "python": "3.11"}
    return {"date": "2030-01-01T00:00:00+00:00", "machine": machine, "git": "abc1234",
            "command": "python tools/benchmark_core.py --runs 3", "runs_per_case": 3, "cases": list(cases)}


# ---------------------------------------------------------------- aggregation and targets


def test_aggregate_median_and_spread(bench):
    runs = [
        {"ate_rmse_m": 0.003, "fps": 30.0, "frames": 100, "mode": "rgbd", "local_ba_ms_mean": None},
        {"ate_rmse_m": 0.001, "fps": 10.0, "frames": 100, "mode": "rgbd", "local_ba_ms_mean": 5.0},
        {"ate_rmse_m": 0.002, "fps": 26.0, "frames": 100, "mode": "rgbd", "local_ba_ms_mean": 7.0,
         "flag": True, "config": {"x": 1}, "rpe_trans_m": float("nan")},
    ]
    s = bench.aggregate(runs)
    assert s["ate_rmse_m"] == {"median": 0.002, "min": 0.001, "max": 0.003, "n": 3}
    assert s["fps"] == {"median": 26.0, "min": 10.0, "max": 30.0, "n": 3}
    assert s["frames"]["min"] == s["frames"]["max"] == 100
    assert s["local_ba_ms_mean"] == {"median": 6.0, "min": 5.0, "max": 7.0, "n": 2}  # None skipped
    assert not {"mode", "flag", "config", "rpe_trans_m"} & set(s)  # strings, bools, dicts, NaN skipped


def test_targets_checked_on_medians(bench):
    summary = bench.aggregate([{"ate_rmse_m": 0.004, "fps": 24.0}, {"ate_rmse_m": 0.006, "fps": 30.0},
                               {"ate_rmse_m": 0.005, "fps": 31.0}])
    targets = (bench.ate_at_most(0.005), bench.Target("fps", ">=", 25.0), bench.Target("peak_rss_mb", "<=", 800))
    checks = {c["metric"]: c for c in bench.check_targets(targets, summary)}
    assert checks["ate_rmse_m"]["met"] and checks["ate_rmse_m"]["median"] == 0.005  # bound inclusive
    assert checks["fps"]["met"] and checks["fps"]["median"] == 30.0
    assert not checks["peak_rss_mb"]["met"] and checks["peak_rss_mb"]["median"] is None  # missing metric fails


def test_tracked_fraction_derived(bench, tmp_path):
    record = fake_run(bench, tmp_path, 1, frames=200, tracked_frames=199)
    assert record["ok"] and record["metrics"]["tracked_fraction"] == pytest.approx(0.995)
    assert not bench.ALL_FRAMES_TRACKED.met_by(record["metrics"]["tracked_fraction"])
    assert bench.ALL_FRAMES_TRACKED.met_by(1.0)


def test_tracked_after_initialisation_derived(bench, tmp_path):
    record = fake_run(bench, tmp_path, 1, frames=160, tracked_frames=140, initialized_frame=10)
    assert record["metrics"]["tracked_after_init"] == pytest.approx(140 / 150)


def test_case_table_matches_the_brief(bench):
    cases = {c.name: c for c in bench.CASES}
    assert list(cases) == ["synthetic_rgbd_300", "tum_fr3_teddy_rgbd", "kitti_06_stereo", "euroc_v101_stereo",
                           "synthetic_mono_300", "tum_fr3_teddy_mono", "kitti_07_mono"]
    bounds = {name: {t.metric: t.bound for t in c.targets} for name, c in cases.items()}
    assert bounds["synthetic_rgbd_300"] == {"ate_rmse_m": 0.005, "tracked_fraction": 1.0}
    assert bounds["tum_fr3_teddy_rgbd"] == {"ate_rmse_m": 0.007, "tracked_fraction": 1.0, "fps": 25.0,
                                            "tracking_ms_p50": 25.0, "peak_rss_mb": 800.0}
    assert bounds["kitti_06_stereo"] == {"ate_rmse_m": 0.18, "tracked_fraction": 1.0}
    assert bounds["euroc_v101_stereo"] == {}
    # Issue #4's monocular targets (Sim(3) ATE).
    assert bounds["synthetic_mono_300"] == {"ate_rmse_m": 0.01, "tracked_fraction": 0.95}
    assert bounds["tum_fr3_teddy_mono"] == {"ate_rmse_m": 0.015, "tracked_fraction": 0.9}
    assert bounds["kitti_07_mono"] == {"ate_rmse_m": 0.35, "tracked_after_init": 0.95}
    assert all(c.max_frames is None for c in cases.values())
    assert all((TOOL.parents[1] / c.config).is_file() for c in cases.values())
    with pytest.raises(ValueError, match="unknown"):
        bench.select_cases(bench.CASES, ["nope"])
    assert [c.name for c in bench.select_cases(bench.CASES, ["kitti_06_stereo", "synthetic_rgbd_300"])] == [
        "synthetic_rgbd_300", "kitti_06_stereo"]


def test_slam_command(bench, tmp_path):
    case = bench.Case("c", "configs/synthetic_rgbd.yaml", "seq", overrides=("a.b=1", "c.d=2"), max_frames=7)
    cmd = bench.slam_command(case, tmp_path / "seq", tmp_path / "out")
    assert cmd[:5] == [sys.executable, "-m", "slam", "run", "configs/synthetic_rgbd.yaml"]
    assert cmd[5:] == ["--data", str(tmp_path / "seq"), "--out", str(tmp_path / "out"), "--quiet",
                       "--max-frames", "7", "--set", "a.b=1", "--set", "c.d=2"]
    assert bench.resolve_data(case, tmp_path) == tmp_path / "seq"


# ---------------------------------------------------------------- failed runs


def test_failed_runs_are_recorded(bench, tmp_path):
    missing = fake_run(bench, tmp_path, 1)  # exit 0 but no run.json
    crashed = fake_run(bench, tmp_path, 2, exit_code=1, frames=5, tracked_frames=5)  # run.json but exit 1
    timed_out = fake_run(bench, tmp_path, 3, exit_code=None)
    (tmp_path / "run-4").mkdir()
    (tmp_path / "run-4" / "run.json").write_text("{not json")
    garbled = bench.collect_run(4, 0, tmp_path / "run-4")
    assert not any(r["ok"] for r in (missing, crashed, timed_out, garbled))
    assert "run.json" in missing["error"] and "run.json" in garbled["error"]
    assert crashed["error"] == "exit 1: slam run: error: boom"
    assert timed_out["error"].startswith("timed out")


def test_failed_runs_appear_as_failed(bench, tmp_path):
    case = bench.Case("partly", "configs/x.yaml", "seq", targets=(bench.ate_at_most(0.01),))
    good = [fake_run(bench, tmp_path, i, ate_rmse_m=0.002 * i, frames=10, tracked_frames=10) for i in (1, 2)]
    partly = bench.case_result(case, tmp_path, [*good, fake_run(bench, tmp_path, 3, exit_code=1)], [])
    broken = bench.case_result(bench.Case("broken", "configs/x.yaml", "seq"), tmp_path,
                               [fake_run(bench, tmp_path, 4, exit_code=2)], [])
    no_data = bench.case_result(bench.Case("nodata", "configs/x.yaml", "seq"), None, [], [],
                                setup_error="OSError: disk full")
    assert partly["ok_runs"] == 2 and partly["failed_runs"] == 1 and not partly["targets_met"]
    assert partly["summary"]["ate_rmse_m"]["median"] == pytest.approx(0.003)  # over the good runs only
    assert not broken["targets_met"] and not no_data["targets_met"]
    section = bench.format_section(fake_results(bench, partly, broken, no_data))
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    assert "2/3 ok" in rows["partly"] and "FAILED: 1 of 3 runs failed" in rows["partly"]
    assert "0.0030 [0.0020-0.0040]" in rows["partly"]
    assert "FAILED: 1 of 1 runs failed" in rows["broken"] and "n/a" in rows["broken"]
    assert "FAILED: OSError: disk full" in rows["nodata"]
    assert "exit 2: slam run: error: boom" in section  # the reason is listed under the table


# ---------------------------------------------------------------- Markdown


def passing_case(bench, tmp_path) -> dict:
    case = bench.Case("ok_case", "configs/synthetic_rgbd.yaml", "seq", targets=(bench.ate_at_most(0.01),))
    runs = [fake_run(bench, tmp_path, i, ate_rmse_m=0.001 * i, frames=10, tracked_frames=10, fps=30.0 + i,
                     tracking_ms_p50=10.0, tracking_ms_p95=20.0, peak_rss_mb=300.0, startup_s=1.5,
                     local_ba_ms_mean=None) for i in (1, 2, 3)]
    return bench.case_result(case, tmp_path, runs, [])


def test_section_contents(bench, tmp_path):
    section = bench.format_section(fake_results(bench, passing_case(bench, tmp_path)))
    assert section.startswith(bench.START_MARKER) and section.endswith(bench.END_MARKER)
    for text in ("2030-01-01", "Linux-test", "2 CPUs", "Test CPU", "8 GiB", "`python tools/benchmark_core.py --runs 3`",
                 bench.TABLE_HEADER):
        assert text in section
    row = next(line for line in section.splitlines() if line.startswith("| ok_case"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["ok_case", "3", "0.0020 [0.0010-0.0030]", "10/10", "32.0 [31.0-33.0]", "10.0 / 20.0", "300",
                     "1.50", "n/a", "yes"]
    header_cells = bench.TABLE_HEADER.strip("|").split("|")
    separator = next(line for line in section.splitlines() if line.startswith("|---"))
    assert len(cells) == len(header_cells) == separator.count("---")


def test_replace_section_keeps_surrounding_text(bench):
    old = f"{bench.START_MARKER}\nold table\n{bench.END_MARKER}"
    new = f"{bench.START_MARKER}\nnew table\n{bench.END_MARKER}"
    text = f"# Benchmarks\n\nintro\n\n{old}\n\n## Other\nkept\n"
    assert bench.replace_section(text, new) == f"# Benchmarks\n\nintro\n\n{new}\n\n## Other\nkept\n"
    assert bench.replace_section(bench.replace_section(text, new), new) == bench.replace_section(text, new)
    assert bench.replace_section("# Title\n", new) == f"# Title\n\n{new}\n"  # appended
    assert bench.replace_section("# Title", new) == f"# Title\n\n{new}\n"
    assert bench.replace_section("", new) == f"{new}\n"
    with pytest.raises(ValueError, match="markers"):
        bench.replace_section(f"x\n{bench.START_MARKER}\nno end\n", new)
    with pytest.raises(ValueError, match="markers"):
        bench.replace_section(f"{bench.END_MARKER}\n{bench.START_MARKER}\n", new)


def test_update_markdown_file(bench, tmp_path):
    doc = tmp_path / "docs" / "benchmarks.md"
    first = f"{bench.START_MARKER}\none\n{bench.END_MARKER}"
    second = f"{bench.START_MARKER}\ntwo\n{bench.END_MARKER}"
    bench.update_markdown(doc, first)  # created
    assert doc.read_text() == first + "\n"
    doc.write_text("# Head\n\n" + doc.read_text() + "\ntail\n")
    bench.update_markdown(doc, second)
    assert doc.read_text() == f"# Head\n\n{second}\n\ntail\n"
    assert [p.name for p in doc.parent.iterdir()] == ["benchmarks.md"]  # no temporary file left


def test_machine_info_parsers(bench, tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Some CPU @ 3GHz\n\nprocessor\t: 1\n")
    (tmp_path / "meminfo").write_text("MemTotal:       16777216 kB\nMemFree: 1 kB\n")
    assert bench.cpu_model(tmp_path / "cpuinfo") == "Some CPU @ 3GHz"
    assert bench.cpu_model(tmp_path / "absent") is None
    assert bench.total_memory_gib(tmp_path / "meminfo") == 16.0
    info = bench.machine_info()
    assert info["cpu_count"] and info["platform"]


def test_main_rejects_bad_arguments(bench, capsys):
    assert bench.main(["--only", "nope"]) == 2
    assert bench.main(["--runs", "0"]) == 2
    assert "unknown case" in capsys.readouterr().err


# ---------------------------------------------------------------- one tiny real run


def test_end_to_end_tiny_synthetic(bench, tmp_path):
    from slam.synthetic import render_sequence

    seq = render_sequence(tmp_path / "s", frames=10, seed=1)
    cases = [
        bench.Case("missing_data", "configs/synthetic_rgbd.yaml", "does/not/exist", max_frames=10),
        bench.Case("tiny_synthetic", "configs/synthetic_rgbd.yaml", lambda: seq, max_frames=10,
                   targets=(bench.ALL_FRAMES_TRACKED,)),
    ]
    out = tmp_path / "bench"
    results = bench.run_benchmark(cases, tmp_path / "data", out, runs=1, command_line="test", log=lambda _m: None)
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs_per_case"] == 1 and saved["command"] == "test" and saved["machine"]["cpu_count"]
    missing, tiny = saved["cases"]
    assert missing["failed_runs"] == 1 and not missing["targets_met"]  # reported, and the next case still ran
    assert tiny["ok_runs"] == 1 and tiny["failed_runs"] == 0, tiny["runs"][0]["error"]
    s = tiny["summary"]
    for key in ("frames", "tracked_frames", "tracking_ms_p50", "tracking_ms_p95", "fps", "startup_s", "peak_rss_mb",
                "ate_rmse_m", "rpe_trans_m", "keyframes", "map_points"):
        assert set(s[key]) == {"median", "min", "max", "n"}, key
        assert s[key]["min"] <= s[key]["median"] <= s[key]["max"], key
    assert s["frames"]["median"] == 10
    assert tiny["runs"][0]["metrics"]["mode"] == "rgbd"
    assert (out / "tiny_synthetic" / "run-1" / "run.json").is_file()
    assert (out / "tiny_synthetic" / "run-1.log").read_text().startswith("$ ")
    section = (out / "benchmark.md").read_text()
    assert "| tiny_synthetic | 1 |" in section
    assert "FAILED" in next(line for line in section.splitlines() if line.startswith("| missing_data"))
    assert results["cases"][1]["name"] == "tiny_synthetic"
