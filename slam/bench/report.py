"""The Markdown section of a benchmark: our runs and the peers' in one table, the published figures apart.

The section sits between START_MARKER and END_MARKER in a Markdown file (`<!-- SECTION:start -->`, a
suite's `section`, bench-suite by default); `update_markdown` replaces it (or appends it) and leaves the rest
of the file as it was.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from slam.bench import published
from slam.bench.results import Cell
from slam.bench.suite import DEFAULT_SECTION, DEFAULT_TITLE, Suite
from slam.errors import SlamInputError


def markers(section: str = DEFAULT_SECTION) -> tuple[str, str]:
    return f"<!-- {section}:start -->", f"<!-- {section}:end -->"


START_MARKER, END_MARKER = markers()
TABLE_HEADER = (
    "| sequence | mode | method | runs ok | ATE m (align) | ATE online m | RPE m/frame | tracked/frames | "
    "tracking ms p50 / p95 | fps | run wall s | peak RSS MB | start-up s | local BA ms | status |"
)


def format_section(cells: list[Cell], header: dict[str, Any], suite: Suite | None = None) -> str:
    """The whole section, markers included (the suite's section name and title, its sequences' notes and
    targets); the published figures only where a peer ran beside us."""
    m = header["machine"]
    start, end = markers(suite.section if suite else DEFAULT_SECTION)
    lines = [
        start,
        f"### {suite.title if suite else DEFAULT_TITLE}",
        "",
        f"- Date: {header['date']}",
        f"- Machine: {m['platform']}; {m['cpu_count']} CPUs ({m.get('cpu_model') or 'model unknown'}); "
        f"{m.get('memory_gib')} GiB memory; Python {m['python']}",
        f"- Code: commit {header.get('git') or 'unknown'}",
        f"- Command: `{header['command']}` ({header['executor']})",
        "- Each run is its own process; values are median [min-max] over the successful runs. ATE is the RMSE "
        "after SE(3) alignment (rgbd, stereo) or Sim(3) (mono) through `slam.evaluation`, for every method.",
        *([f"- Note: {header['note']}"] if header.get("note") else []),
        "",
        TABLE_HEADER,
        "|" + "---|" * (TABLE_HEADER.count("|") - 1),
        *(table_row(c) for c in cells),
        "",
        *target_lines(cells),
        *note_lines(cells, {s.name: s.note for s in suite.sequences} if suite else {}),
        *problem_lines(cells),
        *(published_lines() if any(c.peer for c in cells) else []),
        end,
    ]
    return "\n".join(lines)


def table_row(cell: Cell) -> str:
    s = cell.summary
    total = len(cell.runs)
    align = next((r.metrics.get("ate_align") for r in cell.ok_runs if r.metrics.get("ate_align")), None)
    ate = stat(s, "ate_rmse_m", 4) + (f" ({align})" if align and "ate_rmse_m" in s else "")
    cells = [
        cell.sequence,
        cell.mode,
        cell.method if cell.peer is None else f"{cell.method} (peer)",
        f"{len(cell.ok_runs)}/{total}" if total else "-",
        ate,
        stat(s, "ate_online_rmse_m", 4),
        stat(s, "rpe_trans_m", 4),
        tracked(s),
        f"{stat(s, 'tracking_ms_p50', 1)} / {stat(s, 'tracking_ms_p95', 1)}",
        stat(s, "fps", 1),
        stat(s, "run_wall_s", 1),
        stat(s, "peak_rss_mb", 0),
        stat(s, "startup_s", 2),
        stat(s, "local_ba_ms_mean", 1),
        status_text(cell),
    ]
    return "| " + " | ".join(_cell_text(c) for c in cells) + " |"


def status_text(cell: Cell) -> str:
    status = cell.status
    if status == "ok":
        return "ok"
    if status == "skipped":
        return f"skipped: {cell.reason}"
    if status == "failed":
        return "FAILED"
    return f"FAILED {len(cell.runs) - len(cell.ok_runs)} of {len(cell.runs)}"


def target_lines(cells: list[Cell]) -> list[str]:
    """Each cell's targets, checked on its medians: met, or missed with the median."""
    lines = []
    for c in cells:
        if not c.checks:
            continue
        met = ", ".join(f"{ch['metric']} {ch['op']} {ch['bound']:g}" for ch in c.checks if ch["met"])
        if c.targets_met:
            lines.append(f"- {c.sequence} / {c.method}: met ({met})")
            continue
        missed = [status_text(c)] if c.status != "ok" else []
        missed += [
            f"{ch['metric']} {_sig(ch['median'])}, not {ch['op']} {ch['bound']:g}" for ch in c.checks if not ch["met"]
        ]
        lines.append(f"- {c.sequence} / {c.method}: MISSED: {'; '.join(missed)}" + (f" (met: {met})" if met else ""))
    if not lines:
        return []
    return ["Targets (on the medians of the successful runs; every run must succeed):", "", *lines, ""]


def note_lines(cells: list[Cell], sequence_notes: dict[str, str] | None = None) -> list[str]:
    """The suite's notes on its sequences, and what a method's runs say about how they ran (run.json "note",
    e.g. the ORB-SLAM3 peer's vocabulary)."""
    lines = [f"- {name}: {_oneline(note)}" for name, note in (sequence_notes or {}).items() if note]
    notes: dict[str, list[str]] = {}
    for c in cells:
        for r in c.ok_runs:
            note = r.metrics.get("note")
            if isinstance(note, str) and note and note not in notes.setdefault(c.method, []):
                notes[c.method].append(note)
    lines += [f"- {method}: {_oneline(note)}" for method, items in notes.items() for note in items]
    return ["Notes:", "", *lines, ""] if lines else []


def problem_lines(cells: list[Cell]) -> list[str]:
    """Each failed run with its error (the run's folder has job.log)."""
    lines = [
        f"- {c.sequence} / {c.method} run {r.run}: {_oneline(r.error) or 'failed'}"
        for c in cells
        for r in c.runs
        if r.status == "failed"
    ]
    return ["Failed runs:", "", *lines, ""] if lines else []


def published_lines() -> list[str]:
    lines = [
        "#### Published figures (not measured here)",
        "",
        "Full sequences, the authors' machines and protocols: context only, not comparable with the short "
        "chunks above.",
        "",
        "| system | sequence | mode | ATE RMSE m | source |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.system} | {f.sequence} | {f.mode} | {f.ate_rmse_m:.3f} | [{f.source}] |" for f in published.FIGURES
    ]
    lines += ["", *(f"- [{s.key}] {s.citation}" for s in published.SOURCES), f"- {published.NOT_FOUND}", ""]
    return lines


def stat(summary: dict[str, dict[str, float]], key: str, digits: int) -> str:
    s = summary.get(key)
    if not s:
        return "n/a"
    if s["min"] == s["max"]:
        return _num(s["median"], digits)
    return f"{_num(s['median'], digits)} [{_num(s['min'], digits)}-{_num(s['max'], digits)}]"


def tracked(summary: dict[str, dict[str, float]]) -> str:
    done, frames = summary.get("tracked_frames"), summary.get("frames")
    if not done or not frames:
        return "n/a"
    low, high = int(done["min"]), int(done["max"])
    count = str(low) if low == high else f"{low}-{high}"
    n = int(frames["median"]) if frames["min"] == frames["max"] else f"{int(frames['min'])}-{int(frames['max'])}"
    return f"{count}/{n}"


def _num(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _sig(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _cell_text(text: str) -> str:
    return _oneline(text).replace("|", "\\|")


def replace_section(text: str, section: str, name: str = DEFAULT_SECTION) -> str:
    """`text` with the section marked `name` replaced by `section`, or `section` appended when there is none."""
    start_marker, end_marker = markers(name)
    start, end = text.find(start_marker), text.find(end_marker)
    if start == -1 and end == -1:
        return section + "\n" if not text else text + ("\n" if text.endswith("\n") else "\n\n") + section + "\n"
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"unbalanced markers: need {start_marker} before {end_marker}")
    return text[:start] + section + text[end + len(end_marker) :]


def update_markdown(path: Path, section: str, name: str = DEFAULT_SECTION) -> None:
    """Replace the section marked `name` in `path` (atomically: a reader never sees half a file)."""
    text = path.read_text() if path.exists() else ""
    try:
        updated = replace_section(text, section, name)
    except ValueError as exc:
        raise SlamInputError(str(exc), path) from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(updated)
    tmp.replace(path)
