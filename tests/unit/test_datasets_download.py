"""datasets/download.py offline: extraction into the readers' layout, checksums, resumable downloads."""

from __future__ import annotations

import hashlib
import http.server
import io
import runpy
import tarfile
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "datasets" / "download.py"


@pytest.fixture(scope="module")
def dl():
    # A standalone script, not a package: run it by path (not as __main__) and use its globals.
    return SimpleNamespace(**runpy.run_path(str(SCRIPT), run_name="download_script"))


def _make_tgz(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _make_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_tum_archive_lands_in_tum_folder(dl, tmp_path):
    archive = tmp_path / "rgbd_dataset_freiburg1_xyz.tgz"
    name = "rgbd_dataset_freiburg1_xyz"
    _make_tgz(archive, {f"{name}/rgb.txt": b"# rgb\n", f"{name}/rgb/1.0.png": b"png", f"{name}/depth.txt": b"#\n"})
    root = tmp_path / "root"
    job = dl.resolve("freiburg1_xyz")
    assert job.name == name
    assert job.archives[0].urls[0].endswith(f"/freiburg1/{name}.tgz")
    job.extract(archive, root)
    assert _tree(root) == {f"tum/{name}/rgb.txt", f"tum/{name}/rgb/1.0.png", f"tum/{name}/depth.txt"}
    assert (root / f"tum/{name}/rgb/1.0.png").read_bytes() == b"png"


def test_euroc_environment_zip_extracts_only_the_sequence(dl, tmp_path):
    inner = tmp_path / "V1_01_easy.zip"
    _make_zip(inner, {"mav0/cam0/data.csv": b"#t\n", "mav0/imu0/data.csv": b"#t\n", "__MACOSX/mav0/._x": b"junk"})
    other = tmp_path / "V1_02_medium.zip"
    _make_zip(other, {"mav0/cam0/data.csv": b"other\n"})
    group = tmp_path / "euroc_vicon_room1.zip"
    _make_zip(group, {"vicon_room1/V1_01_easy/V1_01_easy.zip": inner.read_bytes(),
                      "vicon_room1/V1_01_easy/V1_01_easy.bag": b"bag",
                      "vicon_room1/V1_02_medium/V1_02_medium.zip": other.read_bytes()})
    root = tmp_path / "root"
    dl.resolve("V1_01_easy").extract(group, root)
    assert _tree(root) == {"euroc/V1_01_easy/mav0/cam0/data.csv", "euroc/V1_01_easy/mav0/imu0/data.csv"}


def test_euroc_sequence_zip_also_works(dl, tmp_path):
    archive = tmp_path / "MH_01_easy.zip"
    _make_zip(archive, {"mav0/cam1/sensor.yaml": b"%YAML:1.0\n"})
    root = tmp_path / "root"
    dl.extract_euroc(archive, root, "MH_01_easy")
    assert _tree(root) == {"euroc/MH_01_easy/mav0/cam1/sensor.yaml"}


def test_kitti_archives_merge_into_one_sequence_folder(dl, tmp_path):
    gray = tmp_path / "data_odometry_gray.zip"
    _make_zip(gray, {"dataset/sequences/07/image_0/000000.png": b"a", "dataset/sequences/07/times.txt": b"0\n",
                     "dataset/sequences/08/image_0/000000.png": b"b"})
    calib = tmp_path / "data_odometry_calib.zip"
    _make_zip(calib, {"dataset/sequences/07/calib.txt": b"P0: 1\n", "dataset/sequences/08/calib.txt": b"P0: 2\n"})
    poses = tmp_path / "data_odometry_poses.zip"
    _make_zip(poses, {"dataset/poses/07.txt": b"1 0 0\n", "dataset/poses/08.txt": b"2\n"})
    root = tmp_path / "root"
    for archive in (gray, calib, poses):
        dl.extract_kitti(archive, root, "07")
    assert _tree(root) == {"kitti/sequences/07/image_0/000000.png", "kitti/sequences/07/times.txt",
                           "kitti/sequences/07/calib.txt", "kitti/poses/07.txt"}
    dl.extract_kitti(gray, root, None)
    assert "kitti/sequences/08/image_0/000000.png" in _tree(root)


def test_unsafe_member_path_is_refused(dl, tmp_path):
    archive = tmp_path / "evil.tgz"
    _make_tgz(archive, {"rgbd_dataset_freiburg1_xyz/../../escape.txt": b"x"})
    with pytest.raises(dl.DownloadError, match="unsafe"):
        dl.extract_tum(archive, tmp_path / "root", "rgbd_dataset_freiburg1_xyz")
    assert not (tmp_path / "escape.txt").exists()


def test_checksum_good_bad_and_unpublished(dl, tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(b"hello archive")
    good = hashlib.sha256(b"hello archive").hexdigest()
    assert dl.verify_checksum(path, {"a.zip": ("sha256", good)}) == good
    with pytest.raises(dl.DownloadError, match="expected"):
        dl.verify_checksum(path, {"a.zip": ("sha256", "0" * 64)})
    md5 = hashlib.md5(b"hello archive").hexdigest()
    assert dl.verify_checksum(path, {"a.zip": ("md5", md5)}) == md5
    assert dl.verify_checksum(path, {}) is None


def test_names_resolve_and_unknown_is_refused(dl):
    assert dl.resolve("rgbd_dataset_freiburg3_long_office_household").name == (
        "rgbd_dataset_freiburg3_long_office_household")
    assert dl.resolve("kitti_7").name == "kitti_07"
    assert [a.filename for a in dl.resolve("kitti").archives] == list(dl.KITTI_ARCHIVES)
    assert dl.resolve("MH_04_difficult").archives[0].filename == "euroc_machine_hall.zip"
    for bad in ("V9_01_easy", "kitti_22", "freiburg4_xyz"):
        with pytest.raises(dl.DownloadError):
            dl.resolve(bad)
    assert "freiburg3_teddy" in dl.known_names() and "V2_03_difficult" in dl.known_names()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload; honours 'Range: bytes=N-' unless the server says not to."""

    def do_GET(self):  # noqa: N802 - http.server's name
        payload = self.server.payload
        self.server.ranges.append(self.headers.get("Range"))
        start = 0
        header = self.headers.get("Range")
        if header and self.server.honour_range:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            if start >= len(payload):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    srv.payload = bytes(range(256)) * 400
    srv.ranges = []
    srv.honour_range = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/archive.zip"


def test_download_resumes_a_partial_file(dl, tmp_path, server):
    dest = tmp_path / "archive.zip"
    (tmp_path / "archive.zip.part").write_bytes(server.payload[:30000])
    dl.download(_url(server), dest, timeout=10)
    assert server.ranges == ["bytes=30000-"]
    assert dest.read_bytes() == server.payload
    assert not (tmp_path / "archive.zip.part").exists()


def test_download_restarts_when_server_ignores_range(dl, tmp_path, server):
    server.honour_range = False
    dest = tmp_path / "archive.zip"
    (tmp_path / "archive.zip.part").write_bytes(b"garbage that must not stay in front")
    dl.download(_url(server), dest, timeout=10)
    assert dest.read_bytes() == server.payload


def test_download_of_complete_part_file_finishes(dl, tmp_path, server):
    dest = tmp_path / "archive.zip"
    (tmp_path / "archive.zip.part").write_bytes(server.payload)
    dl.download(_url(server), dest, timeout=10)
    assert dest.read_bytes() == server.payload


def test_download_falls_back_to_next_mirror_and_reports_errors(dl, tmp_path, server):
    dest = tmp_path / "archive.zip"
    missing = (tmp_path / "nope.zip").as_uri()
    dl.download((missing, _url(server)), dest, timeout=10)
    assert dest.read_bytes() == server.payload
    with pytest.raises(dl.DownloadError, match="nope"):
        dl.download((missing,), tmp_path / "other.zip", timeout=10)


def test_file_url_download(dl, tmp_path):
    source = tmp_path / "src.tgz"
    source.write_bytes(b"x" * 5000)
    dest = tmp_path / "out" / "src.tgz"
    dl.download(source.as_uri(), dest)
    assert dest.read_bytes() == source.read_bytes()


def test_run_job_end_to_end_with_checksum_and_marker(dl, tmp_path, server, monkeypatch):
    name = "rgbd_dataset_freiburg2_xyz"
    buffer = tmp_path / "src.tgz"
    _make_tgz(buffer, {f"{name}/groundtruth.txt": b"# gt\n"})
    server.payload = buffer.read_bytes()
    job = dl.resolve("freiburg2_xyz")
    archive = dl.Archive(job.archives[0].filename, (_url(server),))
    job = dl.Job(job.name, (archive,), job.extract)
    root = tmp_path / "root"
    with pytest.raises(dl.DownloadError, match="expected"):
        dl.run_job(job, root, {archive.filename: ("sha256", "f" * 64)})
    assert not (root / "tum").exists()
    good = hashlib.sha256(server.payload).hexdigest()
    dl.run_job(job, root, {archive.filename: ("sha256", good)})
    assert (root / f"tum/{name}/groundtruth.txt").read_bytes() == b"# gt\n"
    assert dl.run_job(job, root, {}) == []  # marker: the second run does nothing
