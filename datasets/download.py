#!/usr/bin/env python3
"""Download full benchmark sequences and lay them out as the slam readers expect (standard library only).

    python datasets/download.py freiburg1_xyz V1_01_easy kitti_07 --root ~/data
    python datasets/download.py --list

Layout under --root:
    tum/rgbd_dataset_freiburgN_NAME/        rgb/ depth/ rgb.txt depth.txt groundtruth.txt
    euroc/NAME/mav0/                        cam0/ cam1/ imu0/ state_groundtruth_estimate0/
    kitti/sequences/NN/ + kitti/poses/NN.txt

Archives are kept in --root/.downloads (resumable: an interrupted download continues from its .part
file with an HTTP Range request). KITTI odometry is one archive for all 22 sequences (22 GB of gray
images); `kitti_NN` still downloads it whole but extracts only sequence NN. EuRoC is published as one
zip per environment (machine_hall, vicon_room1, vicon_room2; 5-12 GB each) holding one zip per sequence.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# TUM RGB-D: https://cvg.cit.tum.de/data/datasets/rgbd-dataset/download (vision.in.tum.de redirects there).
TUM_MIRRORS = (
    "https://cvg.cit.tum.de/rgbd/dataset",
    "https://vision.in.tum.de/rgbd/dataset",
)
TUM_SEQUENCES = {
    1: "360 desk desk2 floor plant room rpy teddy xyz",
    2: "360_hemisphere 360_kidnap coke desk desk_with_person dishes flowerbouquet flowerbouquet_brownbackground "
       "large_no_loop large_with_loop metallic_sphere metallic_sphere2 pioneer_360 pioneer_slam pioneer_slam2 "
       "pioneer_slam3 rpy xyz",
    3: "cabinet large_cabinet long_office_household nostructure_notexture_far nostructure_notexture_near_withloop "
       "nostructure_texture_far nostructure_texture_near_withloop sitting_halfsphere sitting_rpy sitting_static "
       "sitting_xyz structure_notexture_far structure_notexture_near structure_texture_far structure_texture_near "
       "teddy walking_halfsphere walking_rpy walking_static walking_xyz",
}

# EuRoC MAV: the ETH Research Collection entry
# https://www.research-collection.ethz.ch/entities/researchdata/bcaf173e-5dac-484b-bc37-faf97a594f1f
# serves one zip per environment; the old per-sequence server (robotics.ethz.ch) is the fallback.
EUROC_COLLECTION = "https://www.research-collection.ethz.ch/bitstreams/{}/download"
EUROC_OLD = "http://robotics.ethz.ch/~asl-datasets/ijrr_euroc_mav_dataset/{group}/{seq}/{seq}.zip"
EUROC_GROUPS = {
    "machine_hall": ("7b2419c1-62b5-4714-b7f8-485e5fe3e5fe",
                     "MH_01_easy MH_02_easy MH_03_medium MH_04_difficult MH_05_difficult"),
    "vicon_room1": ("02ecda9a-298f-498b-970c-b7c44334d880", "V1_01_easy V1_02_medium V1_03_difficult"),
    "vicon_room2": ("ea12bc01-3677-4b4c-853d-87c7870b8c44", "V2_01_easy V2_02_medium V2_03_difficult"),
}

# KITTI odometry: https://www.cvlibs.net/datasets/kitti/eval_odometry.php
KITTI_BASE = "https://s3.eu-central-1.amazonaws.com/avg-kitti"
KITTI_ARCHIVES = ("data_odometry_calib.zip", "data_odometry_poses.zip", "data_odometry_gray.zip")
KITTI_SEQUENCES = 22  # 00-21; poses only for 00-10

# Published checksums, by local archive name: (algorithm, hex digest). None of the three benchmarks
# publishes checksums for these archives on its download page, so the table is empty: the script prints
# each archive's sha256 instead, to be pinned here by whoever verified a download.
CHECKSUMS: dict[str, tuple[str, str]] = {}

CHUNK = 1 << 20


class DownloadError(Exception):
    """A failed download, extraction or checksum; reported as one line."""


@dataclass(frozen=True)
class Archive:
    filename: str  # local name under .downloads/
    urls: tuple[str, ...]  # mirrors, tried in order


@dataclass(frozen=True)
class Job:
    name: str  # canonical name, e.g. rgbd_dataset_freiburg1_xyz, V1_01_easy, kitti_07
    archives: tuple[Archive, ...]
    extract: Callable[[Path, Path], None]  # (archive, root) -> files laid out under root


# ---------------------------------------------------------------- names


def resolve(name: str) -> Job:
    """The archives and extraction for a user-given name (TUM, EuRoC or KITTI)."""
    match = re.fullmatch(r"(?:rgbd_dataset_)?(?:freiburg|fr)([123])_([a-z0-9_]+)", name)
    if match:
        return _tum_job(int(match.group(1)), match.group(2))
    for group, (_bitstream, sequences) in EUROC_GROUPS.items():
        if name in sequences.split():
            return _euroc_job(group, name)
    match = re.fullmatch(r"kitti(?:_(\d{1,2}))?", name)
    if match:
        sequence = None if match.group(1) is None else f"{int(match.group(1)):02d}"
        if sequence is not None and int(sequence) >= KITTI_SEQUENCES:
            raise DownloadError(f"{name}: KITTI odometry has sequences 00-{KITTI_SEQUENCES - 1}")
        return _kitti_job(sequence)
    raise DownloadError(f"unknown dataset name '{name}' (see --list)")


def _tum_job(fr: int, short: str) -> Job:
    full = f"rgbd_dataset_freiburg{fr}_{short}"
    filename = f"{full}.tgz"
    urls = tuple(f"{mirror}/freiburg{fr}/{filename}" for mirror in TUM_MIRRORS)
    return Job(full, (Archive(filename, urls),), lambda archive, root: extract_tum(archive, root, full))


def _euroc_job(group: str, seq: str) -> Job:
    bitstream, _ = EUROC_GROUPS[group]
    archives = (Archive(f"euroc_{group}.zip", (EUROC_COLLECTION.format(bitstream),)),
                Archive(f"{seq}.zip", (EUROC_OLD.format(group=group, seq=seq),)))
    # The two archives are alternatives: the first that downloads is extracted (see run_job).
    return Job(seq, archives, lambda archive, root: extract_euroc(archive, root, seq))


def _kitti_job(sequence: str | None) -> Job:
    archives = tuple(Archive(name, (f"{KITTI_BASE}/{name}",)) for name in KITTI_ARCHIVES)
    name = "kitti" if sequence is None else f"kitti_{sequence}"
    return Job(name, archives, lambda archive, root: extract_kitti(archive, root, sequence))


def known_names() -> list[str]:
    names = [f"freiburg{fr}_{s}" for fr, seqs in TUM_SEQUENCES.items() for s in seqs.split()]
    names += [s for _, seqs in EUROC_GROUPS.values() for s in seqs.split()]
    names += ["kitti"] + [f"kitti_{i:02d}" for i in range(KITTI_SEQUENCES)]
    return names


# ---------------------------------------------------------------- download


def download(urls: tuple[str, ...] | str, dest: Path, timeout: float = 60.0) -> Path:
    """Fetch the first mirror that answers into dest, resuming dest.part with a Range request."""
    if isinstance(urls, str):
        urls = (urls,)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            _fetch(url, dest, timeout)
            return dest
        except DownloadError as exc:
            errors.append(str(exc))
    raise DownloadError("; ".join(errors))


def _fetch(url: str, dest: Path, timeout: float) -> None:
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "slam-datasets/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part file is complete
            part.replace(dest)
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    with response:
        resumed = offset > 0 and getattr(response, "status", None) == 206 and _range_start(response) == offset
        if not resumed:
            offset = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        try:
            with open(part, "ab" if resumed else "wb") as f:
                _copy(response, f, total, dest.name)
        except OSError as exc:
            raise DownloadError(f"{url}: interrupted ({exc}); run again to resume") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: got {size} of {total} bytes; run again to resume")
    part.replace(dest)


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _copy(response, f, total: int | None, label: str) -> None:
    done = f.tell()
    shown = -1
    while chunk := response.read(CHUNK):
        f.write(chunk)
        done += len(chunk)
        if total and sys.stderr.isatty():
            percent = 100 * done // total
            if percent != shown:
                print(f"\r{label}: {percent}% of {total / 1e9:.2f} GB", end="", file=sys.stderr)
                shown = percent
    if shown >= 0:
        print(file=sys.stderr)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, checksums: dict[str, tuple[str, str]] = CHECKSUMS) -> str | None:
    """Check path against the table; returns the digest checked, or None when nothing is published."""
    entry = checksums.get(path.name)
    if entry is None:
        return None
    algorithm, expected = entry
    actual = file_digest(path, algorithm)
    if actual.lower() != expected.lower():
        raise DownloadError(f"{path}: {algorithm} is {actual}, expected {expected} (delete it and download again)")
    return actual


# ---------------------------------------------------------------- extraction


def extract_tum(archive: Path, root: Path, name: str) -> None:
    """rgbd_dataset_freiburgN_NAME/... -> root/tum/rgbd_dataset_freiburgN_NAME/..."""

    def place(member: PurePosixPath) -> PurePosixPath | None:
        parts = member.parts
        if name not in parts:
            return None
        return PurePosixPath("tum", *parts[parts.index(name):])

    if not extract_members(archive, root, place):
        raise DownloadError(f"{archive}: no '{name}/' folder inside")


def extract_euroc(archive: Path, root: Path, seq: str) -> None:
    """An environment zip (<group>/<seq>/<seq>.zip inside) or a sequence zip (mav0/ inside) -> root/euroc/<seq>/mav0."""
    with zipfile.ZipFile(archive) as zf:
        inner = [n for n in zf.namelist() if PurePosixPath(n).name == f"{seq}.zip" and "__MACOSX" not in n]
        if inner:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                nested = Path(zf.extract(inner[0], tmp))
                extract_euroc(nested, root, seq)
            return

    def place(member: PurePosixPath) -> PurePosixPath | None:
        parts = member.parts
        if "__MACOSX" in parts or "mav0" not in parts:
            return None
        # In an environment zip the sequence folder precedes mav0; keep only the wanted sequence.
        before = parts[: parts.index("mav0")]
        if before and seq not in before and any(s in before for s in _all_euroc()):
            return None
        return PurePosixPath("euroc", seq, *parts[parts.index("mav0"):])

    if not extract_members(archive, root, place):
        raise DownloadError(f"{archive}: no mav0/ folder for {seq} inside")


def _all_euroc() -> list[str]:
    return [s for _, seqs in EUROC_GROUPS.values() for s in seqs.split()]


def extract_kitti(archive: Path, root: Path, sequence: str | None) -> None:
    """dataset/sequences/NN/... and dataset/poses/NN.txt -> root/kitti/...; only NN when sequence is given."""

    def place(member: PurePosixPath) -> PurePosixPath | None:
        parts = member.parts
        for top in ("sequences", "poses"):
            if top in parts:
                rel = parts[parts.index(top):]
                if len(rel) < 2:
                    return None
                if sequence is not None and PurePosixPath(rel[1]).stem != sequence:
                    return None
                return PurePosixPath("kitti", *rel)
        return None

    # The poses archive has nothing for sequences 11-21: extracting nothing is fine there.
    extracted = extract_members(archive, root, place)
    if not extracted and "poses" not in archive.name:
        raise DownloadError(f"{archive}: no sequences/ folder" + (f" for {sequence}" if sequence else ""))


def extract_members(archive: Path, root: Path, place: Callable[[PurePosixPath], PurePosixPath | None]) -> int:
    """Extract the regular files `place` maps to a relative path under root; returns how many.

    Files go to a staging folder first and are moved into place only once the whole archive has been
    read, so an interrupted extraction never leaves a half sequence that looks complete.
    """
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{archive.name}"
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    try:
        for member, open_member in _members(archive):
            target = place(PurePosixPath(member))
            if target is None:
                continue
            if target.is_absolute() or ".." in target.parts:
                raise DownloadError(f"{archive}: unsafe path '{member}'")
            out = staging / target
            out.parent.mkdir(parents=True, exist_ok=True)
            with open_member() as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            count += 1
        _merge(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def _members(archive: Path):
    """(name, opener) for each regular file of a tar(.gz) or zip archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, (lambda info=info: zf.open(info))
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for info in tf:
                if info.isfile():
                    yield info.name, (lambda info=info: tf.extractfile(info))
    else:
        raise DownloadError(f"{archive}: neither a zip nor a tar archive")


def _merge(staging: Path, root: Path) -> None:
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            target = root / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


# ---------------------------------------------------------------- driver


def run_job(job: Job, root: Path, checksums: dict[str, tuple[str, str]] = CHECKSUMS) -> list[Path]:
    """Download (resuming) and extract one job; returns the archives it used. Skips a finished job."""
    downloads = root / ".downloads"
    marker = downloads / f"{job.name}.done"
    if marker.is_file():
        print(f"{job.name}: already in place (delete {marker} to redo)")
        return []
    # EuRoC lists alternatives (environment zip, old per-sequence zip); TUM and KITTI need every archive.
    alternatives = job.name in _all_euroc()
    used = []
    errors = []
    for archive in job.archives:
        dest = downloads / archive.filename
        try:
            download(archive.urls, dest)
        except DownloadError as exc:
            if not alternatives:
                raise
            errors.append(str(exc))
            continue
        digest = verify_checksum(dest, checksums)
        if digest is None:
            print(f"{dest.name}: no published checksum; sha256 {file_digest(dest)}")
        print(f"{job.name}: extracting {dest.name}")
        job.extract(dest, root)
        used.append(dest)
        if alternatives:
            break
    if not used:
        raise DownloadError("; ".join(errors))
    marker.write_text("ok\n")
    return used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="sequences to fetch (see --list)")
    parser.add_argument("--root", type=Path, default=Path("data"), help="where the datasets go (default: data)")
    parser.add_argument("--list", action="store_true", help="print the known names and exit")
    parser.add_argument("--delete-archives", action="store_true", help="delete archives after extracting them")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(known_names()))
        return 0
    if not args.names:
        parser.error("name at least one sequence, or use --list")
    try:
        jobs = [resolve(name) for name in args.names]
        used: set[Path] = set()
        for job in jobs:
            used.update(run_job(job, args.root))
        if args.delete_archives:
            for path in used:
                path.unlink(missing_ok=True)
    except (DownloadError, zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
