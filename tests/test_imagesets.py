"""Places365 / PASS image handling on tiny image trees created here."""

from __future__ import annotations

import os

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from exactsnn import imagesets  # noqa: E402


def _save_rgb(path, rng, size=(20, 14), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").save(path, format=fmt)
    return path


PLACES_TREE = {
    "a/airfield": 10,
    "a/apartment_building/outdoor": 5,  # fewer than 8: all are taken
    "b/badlands": 9,
    "b/bakery/shop": 12,
}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("places365")
    rng = np.random.default_rng(0)
    train = root / "data_256"
    for category, n in PLACES_TREE.items():
        for i in range(n):
            ext = ".png" if category == "b/badlands" else ".jpg"
            _save_rgb(train / category / f"{i + 1:08d}{ext}", rng)
    (train / "a" / "README.txt").write_text("not an image")
    val = root / "val_256"
    names = [f"Places365_val_{i:08d}.jpg" for i in range(1, 6)]
    for name in names:
        _save_rgb(val / name, rng, size=(31, 23))
    # one grayscale validation image: Caffe's loader replicates it to three channels
    Image.fromarray(rng.integers(0, 256, (23, 31), dtype=np.uint8), "L").save(val / names[2])
    labels = root / "places365_val.txt"
    labels.write_text("".join(f"{n} {lab}\n" for n, lab in zip(names, [165, 0, 364, 7, 42])))
    return root, train, val, labels


def test_places365_val_list(places):
    _, _, val, labels = places
    paths, y = imagesets.places365_val_list(val, labels)
    assert [os.path.basename(p) for p in paths] == [f"Places365_val_{i:08d}.jpg" for i in range(1, 6)]
    assert all(os.path.exists(p) for p in paths)
    assert y.dtype == np.int64 and y.tolist() == [165, 0, 364, 7, 42]


def test_places365_categories_are_nested_leaf_folders(places):
    _, train, _, _ = places
    cats = imagesets.places365_categories(train)
    assert list(cats) == sorted(PLACES_TREE)
    assert {c: len(f) for c, f in cats.items()} == PLACES_TREE


def test_places365_train_sample_is_seeded(places):
    _, train, _, _ = places
    paths, cats = imagesets.places365_train_sample(train, per_category=8, seed=5)
    again, cats_again = imagesets.places365_train_sample(train, per_category=8, seed=5)
    other, _ = imagesets.places365_train_sample(train, per_category=8, seed=6)
    assert paths == again and cats == cats_again
    assert paths != other
    assert len(paths) == 8 + 5 + 8 + 8 and len(set(paths)) == len(paths)
    assert all(os.path.exists(p) for p in paths)
    counts = {c: cats.count(c) for c in set(cats)}
    assert counts == {"a/airfield": 8, "a/apartment_building/outdoor": 5, "b/badlands": 8, "b/bakery/shop": 8}
    for p, c in zip(paths, cats):
        assert os.path.dirname(p) == os.path.join(str(train), *c.split("/"))


def test_write_and_read_shards_round_trip(places, tmp_path):
    _, _, val, labels = places
    paths, _ = imagesets.places365_val_list(val, labels)
    out = tmp_path / "shards"
    manifest = imagesets.write_shards(paths, out, shard_size=2, size=16)
    assert manifest["complete"] and manifest["count"] == 5 and len(manifest["shards"]) == 3
    assert manifest["skipped"] == []
    direct = np.stack([imagesets.load_image(p, 16) for p in paths])
    stored = imagesets.read_shards(out)
    assert stored.dtype == np.uint8 and stored.shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(stored, direct)
    np.testing.assert_array_equal(imagesets.read_shards(out, 1, 4), direct[1:4])
    gray = stored[2]
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    # the resize is Pillow's bilinear on the RGB image
    with Image.open(paths[0]) as im:
        expected = np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(stored[0], expected)
    assert sorted(os.listdir(out)) == ["manifest.json", "shard_00000.npy", "shard_00001.npy", "shard_00002.npy"]
    # a finished folder is not rewritten
    mtimes = {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out)}
    imagesets.write_shards(paths, out, shard_size=2, size=16)
    assert mtimes == {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out)}


def test_default_size_is_224(places, tmp_path):
    _, _, val, labels = places
    paths, _ = imagesets.places365_val_list(val, labels)
    imagesets.write_shards(paths[:2], tmp_path / "s224")
    assert imagesets.read_shards(tmp_path / "s224").shape == (2, 224, 224, 3)


def test_interrupted_write_resumes_without_half_written_files(places, tmp_path, monkeypatch):
    _, _, val, labels = places
    paths, _ = imagesets.places365_val_list(val, labels)
    out = tmp_path / "shards"
    real = imagesets.load_image
    calls = []

    def failing(path, size=224, **options):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt("simulated interruption")
        return real(path, size, **options)

    monkeypatch.setattr(imagesets, "load_image", failing)
    with pytest.raises(KeyboardInterrupt):
        imagesets.write_shards(paths, out, shard_size=2, size=16)
    assert sorted(os.listdir(out)) == ["manifest.json", "shard_00000.npy"]  # nothing half-written
    manifest = imagesets.shard_manifest(out)
    assert not manifest["complete"] and len(manifest["shards"]) == 1
    with pytest.raises(ValueError, match="incomplete"):
        imagesets.read_shards(out)
    calls.clear()
    monkeypatch.setattr(imagesets, "load_image", lambda p, size=224, **options: (
        calls.append(p), real(p, size, **options))[1])
    imagesets.write_shards(paths, out, shard_size=2, size=16)
    assert calls == paths[2:]  # the first shard was reused
    direct = np.stack([real(p, 16) for p in paths])
    np.testing.assert_array_equal(imagesets.read_shards(out), direct)
    # different paths: the folder is rebuilt, not mixed
    imagesets.write_shards(paths[::-1], out, shard_size=2, size=16)
    np.testing.assert_array_equal(imagesets.read_shards(out), direct[::-1])


def test_undecodable_places_image_raises(tmp_path):
    bad = tmp_path / "Places365_val_00000001.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError, match="cannot decode"):
        imagesets.write_shards([bad], tmp_path / "s", size=8)


def test_caffe_preprocess():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # R, G, B
    x = imagesets.caffe_preprocess(img)
    assert x.dtype == np.float64 and x.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(x[0, 0, 0], [30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434])
    p, q = imagesets.PLACES365_INPUT_RANGE
    extremes = imagesets.caffe_preprocess(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
    assert p <= extremes.min() and extremes.max() <= q
    # Caffe: RGB in [0, 1], BGR, x 255, minus mean — the same numbers
    caffe_way = (img.astype(np.float64) / 255.0)[..., ::-1] * 255.0 - np.array(imagesets.CAFFE_BGR_MEAN)
    np.testing.assert_allclose(x, caffe_way, rtol=0, atol=1e-12)


def test_split_parts():
    parts = imagesets.split_parts(36500)
    assert len(parts) == 13 and parts[0] == (0, 3000) and parts[-1] == (36000, 36500)
    assert all(b - a == 3000 for a, b in parts[:-1])
    assert imagesets.split_parts(6000, 3000) == [(0, 3000), (3000, 6000)]
    assert imagesets.split_parts(0) == []


# ----------------------------------------------------------------------------------------
# PASS
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pass_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("pass")
    rng = np.random.default_rng(1)
    for folder in range(4):
        for i in range(4):
            _save_rgb(root / str(folder) / f"img_{folder}_{i}.jpg", rng, size=(25, 18))
    (root / "0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated garbage")
    Image.fromarray(rng.integers(0, 256, (18, 25), dtype=np.uint8), "L").save(root / "1" / "gray.jpg")
    (root / "2" / "notes.txt").write_text("not an image")
    return root


def test_pass_file_list_seeded_and_saved(pass_tree, tmp_path):
    files = imagesets.pass_file_list(pass_tree, seed=3)
    assert files == imagesets.pass_file_list(pass_tree, seed=3)
    assert files != imagesets.pass_file_list(pass_tree, seed=4)
    assert len(files) == 18 and sorted(files) == sorted(set(files))
    assert "0/broken.jpg" in files and "1/gray.jpg" in files and "2/notes.txt" not in files
    sorted_files = sorted(files)
    assert files == [sorted_files[i] for i in np.random.default_rng(3).permutation(18)]
    list_file = tmp_path / "results" / "pass_files.txt"
    saved = imagesets.pass_file_list(pass_tree, seed=3, list_file=list_file)
    assert saved == files and imagesets.load_file_list(list_file) == files
    # once saved, the list is reused even if the tree or the seed changes
    assert imagesets.pass_file_list(pass_tree, seed=99, list_file=list_file) == files


def test_pass_regions():
    parts, sample = imagesets.pass_regions(1_439_588)
    assert parts == [(50_000 * k, 50_000 * (k + 1), 10_000) for k in range(10)]
    assert sample == (500_000, 1_439_588, 5_000)
    parts, sample = imagesets.pass_regions(15, 3, 4, 5, xn_offset=14, xn_count=1)
    assert parts == [(0, 5, 4), (5, 10, 4), (10, 14, 4)] and sample == (14, 15, 1)
    with pytest.raises(ValueError, match="part 3 starts at 12, but the file list has only 10 files"):
        imagesets.pass_regions(10, 4, 2, 4, xn_offset=6, xn_count=1)
    with pytest.raises(ValueError, match="part 1 needs 4 images from position 6, but the next part or the X_n sample starts at 8"):
        imagesets.pass_regions(20, 2, 4, 6, xn_offset=8, xn_count=2)
    with pytest.raises(ValueError, match="X_n sample needs 8 images from position 16, but the file list ends at 20"):
        imagesets.pass_regions(20, 2, 4, 8, xn_offset=16, xn_count=8)
    with pytest.raises(ValueError, match="where another part or the X_n sample starts too"):
        imagesets.pass_regions(20, 2, 4, 0, xn_offset=16)


def _pass_shards(folder, root):
    """The official shards of a PASS_dataset tree: PASS.<k>.tar holding PASS_dataset/<k>/..."""
    import tarfile

    for sub in sorted(os.listdir(folder)):
        with tarfile.open(root / f"PASS.{sub}.tar", "w") as tar:  # uncompressed, as on Zenodo
            tar.add(folder / sub, arcname=f"PASS_dataset/{sub}")
    return sorted(root.glob("PASS.*.tar"))


@pytest.fixture(scope="module")
def pass_copies(pass_tree, tmp_path_factory):
    """The same PASS images unpacked (root/PASS_dataset/) and as tar shards (root/PASS.k.tar)."""
    import shutil

    unpacked = tmp_path_factory.mktemp("pass_unpacked")
    shutil.copytree(pass_tree, unpacked / "PASS_dataset")
    packed = tmp_path_factory.mktemp("pass_packed")
    _pass_shards(pass_tree, packed)
    return unpacked, packed


def test_pass_shards_and_extracted_folder_give_the_same_images(pass_copies, tmp_path):
    unpacked, packed = pass_copies
    folder, shards = imagesets.pass_source(unpacked), imagesets.pass_source(packed)
    assert folder.folder == str(unpacked / "PASS_dataset") and not folder.shards
    assert shards.folder is None and [os.path.basename(p) for p in shards.shards] == [f"PASS.{k}.tar" for k in range(4)]
    assert "streamed, not unpacked" in shards.describe()
    assert imagesets.pass_source(unpacked / "PASS_dataset").folder == str(unpacked / "PASS_dataset")
    files = imagesets.pass_file_list(folder, seed=3)
    assert imagesets.pass_file_list(shards, seed=3) == files
    assert "0/broken.jpg" in files and "2/notes.txt" not in files
    parts, sample = imagesets.pass_regions(len(files), 2, 4, 6, xn_offset=12, xn_count=3)
    manifests = []
    for source, name in ((folder, "folder"), (shards, "shards")):
        images = [source.image(f) for f in files]
        test = imagesets.write_shards(images, tmp_path / name / "test", shard_size=3, size=16, skip_invalid=True,
                                      fill=parts, root=source.folder)
        manifests.append((test, imagesets.read_shards(tmp_path / name / "test")))
    (m1, x1), (m2, x2) = manifests
    np.testing.assert_array_equal(x1, x2)
    assert [s["count"] for s in m1["segments"]] == [4, 4] and m1["segments"] == m2["segments"]
    assert [e["index"] for e in m1["skipped"]] == [e["index"] for e in m2["skipped"]]
    assert all(":PASS_dataset/" in e["path"] for e in m2["skipped"])
    # nothing was unpacked beside the shards
    assert sorted(os.listdir(packed)) == [f"PASS.{k}.tar" for k in range(4)]


@pytest.mark.parametrize("fill", [[(0, 18, 16)], [(0, 9, 7), (9, 18, 5)]])
def test_pass_parts_are_filled_with_decodable_images_in_list_order(pass_tree, tmp_path, fill):
    files = imagesets.pass_file_list(pass_tree, seed=3)
    bad = {"0/broken.jpg", "1/gray.jpg"}
    paths = [os.path.join(pass_tree, f) for f in files]
    manifest = imagesets.write_shards(paths, tmp_path / "s", shard_size=2, size=16, skip_invalid=True, fill=fill)
    expected = []
    for (start, limit, take), segment in zip(fill, manifest["segments"]):
        good = [f for f in files[start:limit] if f not in bad][:take]  # the first `take` decodable, in order
        assert segment["count"] == take and files[segment["stop"] - 1] == good[-1]
        expected += good
    stored = imagesets.read_shards(tmp_path / "s")
    reference = np.stack([imagesets.load_image(os.path.join(pass_tree, f), 16) for f in expected])
    np.testing.assert_array_equal(stored, reference)
    # only the refused files inside the candidates used were decoded and recorded
    refused = {i for i, f in enumerate(files) if f in bad
               and any(s["start"] <= i < s["stop"] for s in manifest["segments"])}
    assert {e["index"] for e in manifest["skipped"]} == refused
    if fill == [(0, 18, 16)]:
        assert refused  # a refused file was replaced by the next one
    # a rerun reuses the shards
    assert imagesets.write_shards(paths, tmp_path / "s", shard_size=2, size=16, skip_invalid=True, fill=fill) == manifest


def test_a_part_that_cannot_be_filled_is_an_error(pass_tree, tmp_path):
    files = imagesets.pass_file_list(pass_tree, seed=3)
    paths = [os.path.join(pass_tree, f) for f in files]
    with pytest.raises(imagesets.NotEnoughImages, match=r"only 16 of 17 images .* \[0, 18\) \(2 refused\)"):
        imagesets.write_shards(paths, tmp_path / "t", size=16, skip_invalid=True, fill=[(0, 18, 17)])
    with pytest.raises(ValueError, match="needs skip_invalid"):
        imagesets.write_shards(paths, tmp_path / "u", size=16, fill=[(0, 9, 7)])


def test_pass_metadata_restricts_the_list(pass_copies, tmp_path):
    unpacked, packed = pass_copies
    every = imagesets.pass_source(packed).names()
    listed = [f.rsplit("/", 1)[-1].split(".")[0] for f in every if not f.startswith("3/")] + ["not_downloaded"]
    metadata = tmp_path / "pass_metadata.csv"
    metadata.write_text("unickname,hash,datetaken\n" + "".join(f"u,{h},\n" for h in listed))
    source = imagesets.pass_source(packed, metadata=metadata)
    names = source.names()
    assert names == [f for f in every if not f.startswith("3/")]
    assert source.unlisted == 4 and source.missing == 1
    assert str(metadata) in source.describe()
    # found where the download puts it: beside PASS_dataset/
    (unpacked / "pass_metadata.csv").write_text(metadata.read_text())
    try:
        assert imagesets.pass_source(unpacked / "PASS_dataset").names() == names
    finally:
        (unpacked / "pass_metadata.csv").unlink()
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv: no 'hash' column"):
        imagesets.pass_source(packed, metadata=tmp_path / "other.csv").names()


def test_truncated_pass_shard_names_the_shard(pass_tree, tmp_path):
    shard = _pass_shards(pass_tree, tmp_path)[1]
    shard.write_bytes(shard.read_bytes()[:1500])
    with pytest.raises(ValueError, match=r"PASS\.1\.tar: not a readable uncompressed tar file"):
        imagesets.pass_source(tmp_path).names()
    with pytest.raises(FileNotFoundError, match="PASS.0.tar"):
        imagesets.pass_source(tmp_path / "nowhere")


def test_load_pass_images_skips_corrupt_and_grayscale(pass_tree):
    files = imagesets.pass_file_list(pass_tree, seed=3)
    x, kept, skipped = imagesets.load_pass_images(files, size=16, root=pass_tree)
    assert skipped == 2
    assert kept == [f for f in files if f not in ("0/broken.jpg", "1/gray.jpg")]
    assert x.dtype == np.float64 and x.shape == (16, 16, 16, 3)
    raw = np.stack([imagesets.load_image(os.path.join(pass_tree, f), 16) for f in kept]).astype(np.float64)
    expected = raw[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-9)
    p, q = imagesets.PASS_INPUT_RANGE
    assert p <= x.min() and x.max() <= q
    # parallel decoding gives the same result
    x2, kept2, skipped2 = imagesets.load_pass_images(files, size=16, root=pass_tree, workers=2)
    assert kept2 == kept and skipped2 == 2
    np.testing.assert_array_equal(x, x2)


def test_pass_shards_record_skipped(pass_tree, tmp_path):
    files = imagesets.pass_file_list(pass_tree, seed=3)
    paths = [os.path.join(pass_tree, f) for f in files]
    manifest = imagesets.write_shards(paths, tmp_path / "s", shard_size=5, size=16, skip_invalid=True)
    assert manifest["count"] == 16 and len(manifest["skipped"]) == 2
    assert {os.path.basename(s["path"]) for s in manifest["skipped"]} == {"broken.jpg", "gray.jpg"}
    stored = imagesets.read_shards(tmp_path / "s")
    x, _, _ = imagesets.load_pass_images(files, size=16, root=pass_tree)
    np.testing.assert_allclose(imagesets.pass_preprocess(stored), x, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# The image set a data rule writes
# --------------------------------------------------------------------------------------------


def _image_set(tmp_path, **details):
    rng = np.random.default_rng(1)
    paths = [_save_rgb(tmp_path / "images" / f"{k:02d}.png", rng, size=(9, 9)) for k in range(23)]
    imagesets.write_shards(paths, tmp_path / "sample", shard_size=5, size=8)
    return imagesets.ImageSet("pass", "vgg16", imagesets.PASS_INPUT_RANGE, 3, 8, "sample", "sample", None, 23, 23,
                              [(0, 23)], 0, details=details)


def test_image_set_saved_and_loaded_keeps_every_key(tmp_path):
    import json

    from exactsnn.imagesets import open_data

    _image_set(tmp_path, source="here", skipped_reasons={}).save(tmp_path / "dataset.json")
    keys = json.loads((tmp_path / "dataset.json").read_text())
    assert keys["source"] == "here" and keys["labels"] is None and keys["parts"] == [[0, 23]]
    back = open_data(tmp_path / "dataset.json")
    assert back.details == {"source": "here", "skipped_reasons": {}} and back.root == tmp_path
    assert back.test_parts(1) == [(0, 23)] and not back.has_labels
    with pytest.raises(ValueError, match="set parts: 1 in the config"):
        back.test_parts(2)
    back.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == (tmp_path / "dataset.json").read_text()


def test_image_set_load_names_missing_keys_and_unknown_preprocessing(tmp_path):
    (tmp_path / "dataset.json").write_text('{"name": "pass"}')
    with pytest.raises(ValueError, match=r"dataset\.json: not an image-set manifest \(no preprocess"):
        imagesets.ImageSet.load(tmp_path / "dataset.json")
    with pytest.raises(ValueError, match="preprocess 'bgr' is not one of"):
        imagesets.ImageSet("x", "bgr", (0, 1), 2, 8, "t", "s", None, 0, 0, [], 0)


def test_image_set_reads_only_the_shards_of_a_batch(tmp_path, monkeypatch):
    from test_datasets import whole_and_batches

    _image_set(tmp_path).save(tmp_path / "dataset.json")
    data = imagesets.ImageSet.load(tmp_path / "dataset.json")
    for count in (None, 9):
        whole, n, batches = whole_and_batches(data, count)
        assert n == len(whole) == (23 if count is None else 9)
        assert np.array_equal(np.concatenate(batches), whole)
    read = []
    real = imagesets.read_shards
    monkeypatch.setattr(imagesets, "read_shards", lambda d, start=0, stop=None: read.append((start, stop)) or real(d, start, stop))
    data.sample(None, 0, 8, 12)
    assert read == [(8, 12)]


def test_filled_parts_counts_the_files_each_part_refused():
    manifest = {"segments": [{"start": 0, "stop": 6, "count": 4}, {"start": 10, "stop": 13, "count": 3}],
                "skipped": [{"index": 2, "kind": "decode"}, {"index": 5, "kind": "mode"}]}
    assert imagesets.filled_parts(manifest) == ([(0, 4), (4, 7)], [2, 0])
    assert imagesets.skip_reasons(manifest, {"skipped": [{"kind": "mode"}]}) == {"decode": 1, "mode": 2}
