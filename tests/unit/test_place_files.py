"""Vocabulary files: round trip, one-line errors for bad files, and the `slam vocab train` command."""

from __future__ import annotations

import os

import numpy as np
import pytest

from slam.cli import main
from slam.errors import SlamInputError
from slam.place import load_vocabulary, train_vocabulary
from slam.place.vocabulary import FORMAT_VERSION


@pytest.fixture(scope="module")
def binary_vocab():
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    descriptors = centres[rng.integers(0, 40, 4000)] ^ rng.integers(0, 2, (4000, 32), dtype=np.uint8)
    return train_vocabulary(
        np.array_split(descriptors, 40), branching=4, levels=3, seed=1, info={"trained_on": "test"}
    ), descriptors


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def _write(path, arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _one_line_error(path) -> str:
    with pytest.raises(SlamInputError) as err:
        load_vocabulary(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip_gives_the_same_words_and_vectors(tmp_path, binary_vocab):
    vocab, descriptors = binary_vocab
    path = vocab.save(tmp_path / "sub" / "vocab.npz")
    loaded = load_vocabulary(path)
    assert (loaded.kind, loaded.branching, loaded.levels, loaded.n_words) == ("binary", 4, 3, vocab.n_words)
    assert loaded.info["trained_on"] == "test" and loaded.info["images"] == 40
    np.testing.assert_array_equal(loaded.words(descriptors), vocab.words(descriptors))
    a, b = vocab.transform(descriptors[:500], level=2), loaded.transform(descriptors[:500], level=2)
    np.testing.assert_array_equal(a.bow.words, b.bow.words)
    np.testing.assert_array_equal(a.bow.weights, b.bow.weights)
    np.testing.assert_array_equal(a.nodes, b.nodes)
    assert [p.name for p in path.parent.iterdir()] == ["vocab.npz"]  # no temporary file left behind
    assert _arrays(path)["format_version"] == FORMAT_VERSION


def test_float_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    d = rng.normal(size=(2000, 16)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    vocab = train_vocabulary(np.array_split(d, 10), branching=3, levels=3, seed=0)
    loaded = load_vocabulary(vocab.save(tmp_path / "f.npz"))
    assert loaded.kind == "float" and loaded.descriptor_size == 16
    np.testing.assert_array_equal(loaded.words(d), vocab.words(d))


def test_save_replaces_an_existing_file_whole(tmp_path, binary_vocab):
    vocab, _ = binary_vocab
    path = tmp_path / "v.npz"
    path.write_bytes(b"old contents")
    vocab.save(path)
    assert load_vocabulary(path).n_words == vocab.n_words


def test_missing_truncated_and_corrupt_files_give_one_line_errors(tmp_path, binary_vocab):
    vocab, _ = binary_vocab
    good = vocab.save(tmp_path / "good.npz").read_bytes()
    assert "not found" in _one_line_error(tmp_path / "missing.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    _one_line_error(tmp_path / "empty.npz")
    (tmp_path / "text.npz").write_text("not a vocabulary\n")
    assert "not an .npz" in _one_line_error(tmp_path / "text.npz")
    for cut in (len(good) // 3, len(good) - 30):
        (tmp_path / f"cut{cut}.npz").write_bytes(good[:cut])
        _one_line_error(tmp_path / f"cut{cut}.npz")
    corrupt = bytearray(good)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 64] = bytes(64)
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    _one_line_error(tmp_path / "corrupt.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    _one_line_error(tmp_path / "array.npy")


@pytest.mark.parametrize(
    "change, expect",
    [
        ({"format_version": np.int64(FORMAT_VERSION + 1)}, "format version"),
        ({"kind": np.array("sift")}, "descriptor kind"),
        ({"centres": None}, "missing centres"),
        ({"child_count": "short"}, "child counts"),
        ({"levels": np.int64(1)}, "deeper than"),
        ({"idf": "short"}, "weights"),
        ({"idf": "nan"}, "weights"),
        ({"centres": "float"}, "centres"),
        ({"info": np.array("{not json")}, "JSON"),
    ],
)
def test_incompatible_or_inconsistent_contents_are_refused(tmp_path, binary_vocab, change, expect):
    vocab, _ = binary_vocab
    arrays = _arrays(vocab.save(tmp_path / "good.npz"))
    key, value = next(iter(change.items()))
    if value is None:
        del arrays[key]
    elif not isinstance(value, str):
        arrays[key] = value
    elif value == "short":
        arrays[key] = arrays[key][:-1]
    elif value == "nan":
        arrays[key][3] = np.nan
    else:  # "float"
        arrays[key] = arrays[key].astype(np.float32)
    _write(tmp_path / "bad.npz", arrays)
    assert expect in _one_line_error(tmp_path / "bad.npz")


def _tiny(child_count: list[int]) -> dict[str, np.ndarray]:
    counts = np.array(child_count, np.int32)
    return {
        "format_version": np.int64(FORMAT_VERSION),
        "kind": np.array("binary"),
        "branching": np.int64(3),
        "levels": np.int64(2),
        "centres": np.arange(len(counts) * 32, dtype=np.uint8).reshape(-1, 32),
        "child_count": counts,
        "idf": np.ones(int(np.sum(counts == 0)), np.float32),
        "info": np.array("{}"),
    }


def test_child_counts_must_describe_a_breadth_first_tree(tmp_path):
    _write(tmp_path / "ok.npz", _tiny([2, 0, 2, 0, 0]))  # root -> 1, 2; node 2 -> 3, 4
    vocab = load_vocabulary(tmp_path / "ok.npz")
    assert vocab.n_words == 3 and vocab.word_node.tolist() == [1, 3, 4]
    assert vocab.nodes_at_level(np.arange(3), 1).tolist() == [1, 2, 2]
    _write(tmp_path / "loop.npz", _tiny([1, 0, 3, 0, 0]))  # node 2 would be its own child
    assert "precedes its parent" in _one_line_error(tmp_path / "loop.npz")


def _render_images(folder, n: int = 4):
    import cv2

    from slam.synthetic import Renderer, build_scene, make_trajectory, synthetic_camera

    folder.mkdir()
    renderer = Renderer(build_scene(2), synthetic_camera(320, 240))
    for i, pose in enumerate(make_trajectory("orbit", np.arange(n) * 1.5, 2)):
        cv2.imwrite(str(folder / f"{i:03d}.png"), renderer.render(pose)[0])
    return sorted(folder.iterdir())


def test_vocab_train_command_writes_a_loadable_vocabulary(tmp_path, capsys):
    images = _render_images(tmp_path / "images")
    extra = tmp_path / "extra.png"
    extra.write_bytes(images[0].read_bytes())
    out = tmp_path / "out" / "v.npz"
    code = main(
        [
            "vocab",
            "train",
            str(tmp_path / "images"),
            str(extra),
            "--out",
            str(out),
            "--k",
            "6",
            "--levels",
            "3",
            "--n-features",
            "300",
            "--max-descriptors",
            "1000",
        ]
    )
    assert code == 0
    assert "written to" in capsys.readouterr().out
    vocab = load_vocabulary(out)
    assert vocab.kind == "binary" and vocab.branching == 6 and vocab.levels == 3
    assert vocab.info["images"] == 5 and vocab.info["clustered"] == 1000
    assert 36 < vocab.n_words <= 6**3
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"


def test_vocab_train_command_reports_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["vocab", "train", str(tmp_path / "empty"), "--out", str(tmp_path / "v.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("slam vocab: error:") and "no images" in err and "\n" not in err
    assert main(["vocab", "train", str(tmp_path / "nope.png"), "--out", str(tmp_path / "v.npz")]) == 2
    assert "no such image" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    assert main(["vocab", "train", str(broken), "--out", str(tmp_path / "v.npz")]) == 2
    assert "broken.png" in capsys.readouterr().err
    assert main(["vocab", "train", str(broken), "--out", str(tmp_path / "v.npz"), "--k", "1"]) == 2
    assert not (tmp_path / "v.npz").exists()
