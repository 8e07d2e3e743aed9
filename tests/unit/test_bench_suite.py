"""slam bench: SUITE.yaml parsing (one-line errors), the job plan, the default suite, the Markdown section."""

from __future__ import annotations

from pathlib import Path

import pytest

from slam.bench.jobs import RunRecord, plan_jobs
from slam.bench.report import END_MARKER, START_MARKER, format_section, replace_section, update_markdown
from slam.bench.results import build_cells
from slam.bench.suite import load_suite
from slam.cli import main
from slam.errors import SlamInputError

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
    ],
)
def test_bad_suites_give_one_line_naming_the_file(tmp_path, old, new, expected):
    assert old in GOOD
    path = write_suite(tmp_path, GOOD.replace(old, new, 1))
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
