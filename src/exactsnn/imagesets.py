"""Places365 and PASS image handling with Pillow and NumPy (no Caffe, no OpenCV).

Images are decoded once, resized to ``size`` x ``size`` (bilinear, RGB) and stored as uint8
``.npy`` shards; the float64 network input is computed on the fly when a part is run, so the
36,500 Places365 validation images take about 5.5 GB at 224 x 224 instead of tens.

Places365 (VGG16 from Caffe, 365 classes)
    :func:`places365_val_list` reads ``places365_val.txt``; :func:`places365_train_sample`
    draws the X_n sample (8 images per category folder, seeded); :func:`write_shards` /
    :func:`read_shards` store and read the resized images; :func:`split_parts` cuts the
    validation set into jobs; :func:`caffe_preprocess` turns uint8 RGB into Caffe's input.

PASS (VGG16 ImageNet weights, no labels)
    :func:`pass_source` finds the images as distributed: the tar shards ``PASS.0.tar`` ...
    (streamed: each image is read from its shard at its offset, nothing is unpacked) or the
    folder ``PASS_dataset/`` they unpack to, restricted to the images ``pass_metadata.csv``
    lists when it is there; :func:`pass_file_list` makes (or reloads) the one seeded shuffle;
    :func:`pass_regions` places the test parts and the X_n sample in it, and
    :func:`write_shards` with ``fill`` fills each with a fixed number of decodable images;
    :func:`load_pass_images` decodes, skips undecodable or non-RGB files and applies
    ``keras.applications.vgg16.preprocess_input``.

Every file this module writes is written to a temporary name first and then renamed
(``os.replace``), so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from .datasets import Dataset, sample_index

__all__ = [
    "open_data",
    "CAFFE_BGR_MEAN",
    "PLACES365_INPUT_RANGE",
    "PASS_INPUT_RANGE",
    "IMAGE_EXTENSIONS",
    "caffe_preprocess",
    "load_image",
    "ImageRefused",
    "DEFAULT_MAX_PIXELS",
    "places365_val_list",
    "places365_categories",
    "places365_train_sample",
    "write_shards",
    "read_shards",
    "shard_manifest",
    "split_parts",
    "NotEnoughImages",
    "ArchiveMember",
    "PassSource",
    "pass_source",
    "pass_file_list",
    "save_file_list",
    "load_file_list",
    "pass_regions",
    "load_pass_uint8",
    "pass_preprocess",
    "load_pass_images",
]

#: Per-channel ImageNet mean in Caffe's BGR order, on the 0..255 scale (Places365 deploy).
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
#: [p, q] for Caffe-preprocessed images: 0..255 minus the mean lies in [-122.7, 151.0].
PLACES365_INPUT_RANGE = (-200.0, 200.0)
#: [p, q] for ``vgg16.preprocess_input`` images: 0..255 minus (103.939, 116.779, 123.68).
PASS_INPUT_RANGE = (-200.0, 200.0)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")

_MANIFEST = "manifest.json"
_FORMAT = "exactsnn-image-shards"


# --------------------------------------------------------------------------------------
# Decoding and preprocessing
# --------------------------------------------------------------------------------------


#: Largest image (width x height) decoded by default: Pillow's own decompression-bomb limit.
#: A larger one is refused before its pixels are decoded (config ``datasets.<set>.max_pixels``).
DEFAULT_MAX_PIXELS = 89_478_485


class ImageRefused(ValueError):
    """An image that is not decoded: ``reason`` says why in words, ``kind`` is one of
    "undecodable", "not RGB", "too many pixels", "outside its folder", "unknown pixel scale"
    (what the callers count)."""

    def __init__(self, path, kind: str, reason: str):
        super().__init__(f"image {_label(path)!r}: {reason}")
        self.path, self.kind, self.reason = _label(path), kind, reason


@dataclass(frozen=True)
class ArchiveMember:
    """An image inside an uncompressed tar file, read from its offset without unpacking.

    Each read opens the archive anew, so decoding threads never share a file position.
    """

    archive: str
    name: str  # the member's name in the archive
    offset: int  # where its data starts (tarfile's offset_data)
    size: int

    def open(self):
        with open(self.archive, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.archive} ends inside {self.name} (truncated archive)")
        return io.BytesIO(data)

    def __str__(self) -> str:
        return f"{self.archive}:{self.name}"


def _label(path) -> str:
    """How an image is named in messages and manifests: its path, or archive:member."""
    return str(path) if isinstance(path, ArchiveMember) else os.fspath(path)


def _decode_errors():
    from PIL import Image

    return (OSError, ValueError, SyntaxError, EOFError, IndexError, Image.DecompressionBombError)


@contextlib.contextmanager
def _pixel_limit(max_pixels: int):
    """Pillow's bomb guard at our limit for one batch, set outside the decoding threads and
    restored afterwards (it is a process-wide setting).

    Pillow warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that; our own check in
    :func:`load_image` refuses everything above ``max_pixels`` before decoding, so with the
    guard at the same limit an accepted image never warns and none is decoded past it.
    """
    from PIL import Image

    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, int(max_pixels)
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _inside(path: str, root) -> str | None:
    """The real path of ``path`` if it lies in the folder ``root`` (symlinks resolved), else None."""
    real, base = os.path.realpath(path), os.path.realpath(os.fspath(root))
    return real if os.path.commonpath([real, base]) == base else None


def _as_rgb(img, path):
    """``img`` as an 8-bit RGB Pillow image, every mode scaled to 0..255 rather than clipped.

    Pillow's ``convert('RGB')`` clips 16-bit grayscale ('I;16', and 'I' holding 16-bit
    values, as 16-bit PNGs open) at 255, which turns almost every pixel white; those are
    rescaled here by 255/65535.  Floating-point ('F') and integer images beyond 16 bits have
    no scale the file states, so they are refused.  Every other mode (palette, L, LA, RGBA,
    CMYK, YCbCr, 1, ...) goes through ``convert('RGB')``, which scales correctly.
    """
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img)
        if mode == "I" and (a.min(initial=0) < 0 or a.max(initial=0) > 65535):
            raise ImageRefused(path, "unknown pixel scale",
                               f"mode I with values in [{a.min()}, {a.max()}]: no known scale beyond 16 bits")
        a = np.rint(a.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if mode == "F":
        raise ImageRefused(path, "unknown pixel scale", "mode F (floating-point pixels): no known scale to 0..255")
    return img.convert("RGB")


def load_image(path, size: int = 224, *, require_rgb: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
               root=None) -> np.ndarray:
    """Decode ``path``, resize to ``size`` x ``size`` (bilinear) and return uint8 (size, size, 3) RGB.

    ``path`` is a file or an :class:`ArchiveMember`.  Raises :class:`ImageRefused` (a
    ``ValueError``; ``.reason`` says why) for an image that
    cannot be decoded, that has more than ``max_pixels`` pixels (checked from the header,
    before decoding), that lies outside the folder ``root`` once symlinks are resolved, or,
    with ``require_rgb``, whose mode is not ``'RGB'``.  Without ``require_rgb`` other modes
    are converted (:func:`_as_rgb`: grayscale replicated to three channels as
    ``caffe.io.load_image`` does, 16-bit scaled to 8 bits).
    """
    from PIL import Image

    member = isinstance(path, ArchiveMember)  # member names were checked when the archive was listed
    if root is not None and not member and _inside(os.fspath(path), root) is None:
        raise ImageRefused(path, "outside its folder",
                           f"resolves to {os.path.realpath(path)!r}, outside the image folder {os.fspath(root)!r}")
    try:
        with Image.open(path.open() if member else path) as img:
            pixels = img.size[0] * img.size[1]
            if pixels > max_pixels:
                raise ImageRefused(path, "too many pixels", f"{img.size[0]} x {img.size[1]} = {pixels} pixels, more than "
                                         f"max_pixels = {max_pixels} (decompression-bomb guard)")
            if require_rgb and img.mode != "RGB":
                raise ImageRefused(path, "not RGB", f"mode {img.mode}, not RGB")
            img.load()
            rgb = _as_rgb(img, path)
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except ImageRefused:
        raise
    except _decode_errors() as exc:
        raise ImageRefused(path, "undecodable", f"cannot decode ({' '.join(str(exc).split())})") from exc


def caffe_preprocess(images) -> np.ndarray:
    """Caffe's ImageNet/Places input from uint8 RGB images (N, H, W, 3) or (H, W, 3).

    Caffe's Python pipeline loads an image as RGB floats in [0, 1], resizes it, swaps the
    channels to BGR, multiplies by 255 and subtracts the per-channel mean
    :data:`CAFFE_BGR_MEAN`.  The images here are already resized and stored as uint8, and a
    uint8 value v is exactly 255 · (v / 255), so the result is ``float64(v)[..., ::-1] - mean``,
    channel-last, BGR, in [-122.7, 151.0] ⊂ :data:`PLACES365_INPUT_RANGE`.  (Resizing the
    uint8 image instead of the float image rounds each pixel to the nearest of 256 levels.)
    """
    x = np.asarray(images)
    if x.shape[-1] != 3:
        raise ValueError(f"expected RGB images with 3 channels in the last axis, got shape {x.shape}")
    return x[..., ::-1].astype(np.float64) - np.asarray(CAFFE_BGR_MEAN, dtype=np.float64)


def _map(fn, items, workers: int):
    if workers and workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fn, items))
    return [fn(item) for item in items]


# --------------------------------------------------------------------------------------
# Places365 file lists
# --------------------------------------------------------------------------------------


def places365_val_list(val_dir, label_file) -> tuple[list[str], np.ndarray]:
    """Validation image paths and labels from ``places365_val.txt``.

    Each line is ``Places365_val_00000001.jpg 165``; paths are ``val_dir/<name>`` in the
    file's order, labels an int64 array.
    """
    paths, labels = [], []
    with open(label_file, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{os.fspath(label_file)}:{number}: expected '<file> <label>', got {line!r}")
            try:
                label = int(parts[1])
            except ValueError as exc:
                raise ValueError(f"{os.fspath(label_file)}:{number}: label {parts[1]!r} is not an integer") from exc
            _check_relative(parts[0], f"{os.fspath(label_file)}:{number}", val_dir)
            paths.append(os.path.join(os.fspath(val_dir), parts[0]))
            labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def _check_relative(name: str, where: str, folder) -> None:
    """A path from a list file must name a file inside its data folder: no absolute path and
    no ``..`` (a list file is data, and must not reach files the user did not point us to).
    Symlinks that leave the folder are refused when the image is read (:func:`load_image`)."""
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{where}: path {name!r} leaves the data folder {os.fspath(folder)!r} "
                         "(absolute paths and '..' are refused)")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def places365_categories(train_dir) -> dict[str, list[str]]:
    """Category folder -> sorted image file names, for every folder that directly holds images.

    Categories are relative paths with ``/`` separators (``a/airfield``,
    ``a/apartment_building/outdoor``): nested sub-category folders count as categories, and
    the grouping folders above them (``a``, ``a/apartment_building``) hold no images and are
    not categories.  Sorted by category name.
    """
    root = os.fspath(train_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Places365 training folder {root!r} does not exist")
    categories = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        images = sorted(f for f in filenames if _is_image(f))
        if images and os.path.abspath(dirpath) != os.path.abspath(root):
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            categories[rel] = images
    return dict(sorted(categories.items()))


def places365_train_sample(train_dir, per_category: int = 8, seed: int = 0) -> tuple[list[str], list[str]]:
    """A seeded draw of ``per_category`` images from every category folder (for X_n).

    Categories are walked in sorted order and, within each, ``per_category`` distinct files
    are drawn from the sorted file list with ``numpy.random.default_rng(seed)`` (all files if
    a category holds fewer).  The same tree and seed always give the same list.  Returns
    (paths, categories), one category per path.
    """
    if per_category <= 0:
        raise ValueError("per_category must be positive")
    rng = np.random.default_rng(seed)
    paths, cats = [], []
    root = os.fspath(train_dir)
    for category, files in places365_categories(root).items():
        k = min(per_category, len(files))
        chosen = np.sort(rng.choice(len(files), size=k, replace=False))
        for i in chosen:
            paths.append(os.path.join(root, *category.split("/"), files[i]))
            cats.append(category)
    if not paths:
        raise ValueError(f"no images found under {root!r}")
    return paths, cats


def split_parts(n: int, part_size: int = 3000) -> list[tuple[int, int]]:
    """(start, stop) of consecutive parts of ``part_size`` (the last one smaller).

    ``split_parts(36500)`` gives 13 parts: 12 of 3,000 and one of 500.
    """
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    return [(start, min(start + part_size, n)) for start in range(0, n, part_size)]


# --------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------


def _atomic_write_bytes(path: str, write) -> None:
    from .serialize import atomic

    with atomic(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: str, obj) -> None:
    _atomic_write_bytes(path, lambda fh: fh.write(json.dumps(obj, indent=1).encode("utf-8")))


def _paths_digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode("utf-8") + b"\n")
    return h.hexdigest()


def shard_manifest(out_dir) -> dict:
    """The manifest of a shard folder written by :func:`write_shards`."""
    path = os.path.join(os.fspath(out_dir), _MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no image shards in {os.fspath(out_dir)!r} (missing {_MANIFEST}); run write_shards first")
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"{path!r} is not an exactsnn image-shard manifest")
    return manifest


class NotEnoughImages(ValueError):
    """A ``fill`` segment of :func:`write_shards` ran out of candidates before it was full."""


def write_shards(
    paths,
    out_dir,
    shard_size: int = 1000,
    size: int = 224,
    *,
    skip_invalid: bool = False,
    fill=None,
    workers: int = 1,
    root=None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """Decode, resize and store ``paths`` (files or :class:`ArchiveMember`) as uint8
    (n, size, size, 3) ``.npy`` shards in ``out_dir``.

    Without ``fill`` every path is stored, shard k holding the images of
    ``paths[k*shard_size:(k+1)*shard_size]``.  With ``fill``, a list of (start, limit, take),
    segment j stores the first ``take`` images of ``paths[start:limit]`` that can be stored:
    a refused image is replaced by the next candidate, and candidates beyond those needed are
    not decoded, so the segment holds exactly ``take`` images in list order whatever is
    refused.  A segment that runs out of candidates raises :class:`NotEnoughImages`.  The
    manifest's ``segments`` gives, per segment, the candidates used (start, stop) and the count.

    Each shard and the ``manifest.json`` are written atomically, and the manifest is rewritten
    after every shard, so an interrupted run can be resumed: calling again with the same
    arguments reuses the shards already listed and writes the rest.  A finished folder is
    returned unchanged.

    With ``skip_invalid`` (PASS) images that cannot be decoded, are not RGB, have more than
    ``max_pixels`` pixels or lie outside ``root`` are left out and listed in the manifest's
    ``skipped`` entry (index, path, reason); otherwise (Places365) other modes are converted
    to RGB, and a refused image raises :class:`ImageRefused` naming it and the reason.
    Returns the manifest.
    """
    if shard_size <= 0 or size <= 0:
        raise ValueError("shard_size and size must be positive")
    if fill is not None and not skip_invalid:
        raise ValueError("fill replaces refused images by the next ones, so it needs skip_invalid=True")
    items = list(paths)
    names = [_label(p) for p in items]
    segments = [(0, len(items), None)] if fill is None else [(int(a), int(b), int(t)) for a, b, t in fill]
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    settings = {
        "format": _FORMAT,
        "version": 1,
        "size": int(size),
        "shard_size": int(shard_size),
        "skip_invalid": bool(skip_invalid),
        "max_pixels": int(max_pixels),
        "n_paths": len(items),
        "paths_sha256": _paths_digest(names),
        "fill": None if fill is None else [list(seg) for seg in segments],
    }
    manifest = None
    try:
        old = shard_manifest(out)
        if all(old.get(k) == v for k, v in settings.items()):
            manifest = old
    except (FileNotFoundError, ValueError, json.JSONDecodeError):
        manifest = None
    if (
        manifest is not None
        and manifest.get("complete")
        and all(os.path.exists(os.path.join(out, s["file"])) for s in manifest["shards"])
    ):
        return manifest
    if manifest is None:
        manifest = dict(settings, shards=[], skipped=[], count=0, complete=False)
    # A shard is reused only where the same candidates land in the same file again, which a
    # resumed run reproduces exactly because the chunks follow from the counts before them.
    done = {(s["start"], s["stop"], s["file"]): s for s in manifest["shards"]
            if os.path.exists(os.path.join(out, s["file"]))}
    old_skipped = manifest["skipped"]
    shards, skipped, filled = [], [], []

    def load(p):
        try:
            return load_image(p, size, require_rgb=skip_invalid, max_pixels=max_pixels, root=root)
        except ImageRefused as refused:
            if not skip_invalid:
                raise
            return refused

    k = 0
    for seg_start, limit, take in segments:
        i, have = seg_start, 0
        while (i < limit) if take is None else (have < take):
            if i >= limit:
                raise NotEnoughImages(
                    f"only {have} of {take} images could be stored from the {limit - seg_start} candidates "
                    f"[{seg_start}, {limit}) ({sum(seg_start <= e['index'] < limit for e in skipped)} refused)"
                )
            n = min(shard_size, limit - i) if take is None else min(shard_size, take - have, limit - i)
            stop, name = i + n, f"shard_{k:05d}.npy"
            shard = done.get((i, stop, name))
            if shard is not None:
                skipped += [e for e in old_skipped if i <= e["index"] < stop]
            else:
                with _pixel_limit(max_pixels):
                    images = _map(load, items[i:stop], workers)
                kept = []
                for offset, img in enumerate(images):
                    if isinstance(img, ImageRefused):
                        skipped.append({"index": i + offset, "path": names[i + offset],
                                        "kind": img.kind, "reason": img.reason})
                    else:
                        kept.append(img)
                arr = np.stack(kept) if kept else np.zeros((0, size, size, 3), np.uint8)
                _atomic_write_bytes(os.path.join(out, name), lambda fh: np.save(fh, arr, allow_pickle=False))
                shard = {"file": name, "start": i, "stop": stop, "count": int(len(arr))}
            shards.append(shard)
            have, i, k = have + shard["count"], stop, k + 1
            manifest.update(shards=shards, skipped=skipped, count=sum(s["count"] for s in shards))
            _write_json(os.path.join(out, _MANIFEST), manifest)
        filled.append({"start": seg_start, "stop": i, "count": have})
    manifest.update(shards=shards, skipped=skipped, segments=filled,
                    count=sum(s["count"] for s in shards), complete=True)
    _write_json(os.path.join(out, _MANIFEST), manifest)
    return manifest


def read_shards(out_dir, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Images ``start:stop`` (counting stored images, in path order) as one uint8 array.

    Only the shards that overlap the range are read (memory-mapped), so a part of the
    validation set costs only its own memory.
    """
    out = os.fspath(out_dir)
    manifest = shard_manifest(out)
    if not manifest.get("complete"):
        raise ValueError(f"the shards in {out!r} are incomplete; rerun write_shards to finish them")
    total = int(manifest["count"])
    stop = total if stop is None else min(int(stop), total)
    start = int(start)
    if start < 0 or start > stop:
        raise ValueError(f"bad range {start}:{stop} for {total} stored images")
    size = manifest["size"]
    pieces, offset = [], 0
    for shard in manifest["shards"]:
        lo, hi = offset, offset + shard["count"]
        offset = hi
        if hi <= start or lo >= stop or shard["count"] == 0:
            continue
        arr = np.load(os.path.join(out, shard["file"]), mmap_mode="r", allow_pickle=False)
        if arr.shape != (shard["count"], size, size, 3) or arr.dtype != np.uint8:
            raise ValueError(f"shard {shard['file']!r} has shape {arr.shape}/{arr.dtype}, expected uint8 "
                             f"({shard['count']}, {size}, {size}, 3)")
        pieces.append(np.array(arr[max(start, lo) - lo : min(stop, hi) - lo]))
    if not pieces:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.concatenate(pieces)


# --------------------------------------------------------------------------------------
# PASS
# --------------------------------------------------------------------------------------


def save_file_list(paths, list_file) -> None:
    """Write one path per line (atomically)."""
    text = "".join(f"{p}\n" for p in paths)
    if any("\n" in os.fspath(p) for p in paths):
        raise ValueError("file names with newlines cannot be stored in a file list")
    directory = os.path.dirname(os.path.abspath(os.fspath(list_file)))
    os.makedirs(directory, exist_ok=True)
    _atomic_write_bytes(os.fspath(list_file), lambda fh: fh.write(text.encode("utf-8")))


def load_file_list(list_file) -> list[str]:
    """Read a list written by :func:`save_file_list`; every entry must be a relative path
    without ``..`` (:func:`_check_relative`), so a list cannot point outside its folder."""
    with open(list_file, encoding="utf-8") as fh:
        names = [line.rstrip("\n") for line in fh if line.strip()]
    for number, name in enumerate(names, 1):
        _check_relative(name, f"{os.fspath(list_file)}:{number}", "the image root")
    return names


#: How the PASS shards are named on Zenodo; the number orders them.
_PASS_SHARD = re.compile(r"PASS\.(\d+)\.tar$")
#: The folder the shards unpack to; names are taken relative to it in both forms.
PASS_FOLDER = "PASS_dataset"
PASS_METADATA = "pass_metadata.csv"


class PassSource:
    """The PASS images as distributed, in one of two forms with the same image names.

    ``folder``: the extracted tree (``PASS_dataset/0/<hash>.jpg`` ...); ``shards``: the tar files
    ``PASS.0.tar`` ... whose members are ``PASS_dataset/0/<hash>.jpg`` ..., read in place.  Names
    are relative to ``PASS_dataset`` (``0/<hash>.jpg``), so both forms give the same file list,
    the same shuffle and the same parts.  With ``metadata`` (``pass_metadata.csv``, which has a
    ``hash`` column) only the images it lists are used: a file whose stem it does not list is
    left out (``unlisted``), and ``missing`` counts listed images found nowhere (e.g. a shard
    not downloaded).  Both are known once :meth:`names` has run.
    """

    def __init__(self, folder=None, shards=(), metadata=None):
        self.folder = None if folder is None else os.fspath(folder)
        self.shards = [os.fspath(p) for p in shards]
        self.metadata = None if metadata is None else os.fspath(metadata)
        self.unlisted = self.missing = 0
        self._members: dict[str, ArchiveMember] = {}

    def describe(self) -> str:
        """Which copy is read, for the log."""
        if self.folder is not None:
            where = f"the extracted folder {self.folder}"
        else:
            where = (f"the tar shards {self.shards[0]}" + (f" ... {os.path.basename(self.shards[-1])}"
                     if len(self.shards) > 1 else "") + f" ({len(self.shards)} files, streamed, not unpacked)")
        return where + (f", restricted to the images listed in {self.metadata}" if self.metadata else "")

    def names(self) -> list[str]:
        """Every image name, sorted."""
        files = self._scan_folder() if self.folder is not None else self._scan_shards()
        if self.metadata is not None:
            listed = _metadata_hashes(self.metadata)
            kept = [f for f in files if _stem(f) in listed]
            self.unlisted = len(files) - len(kept)
            self.missing = len(listed - {_stem(f) for f in kept})
            files = kept
        if not files:
            raise ValueError(f"no PASS images in {self.describe()}")
        return sorted(files)

    def image(self, name: str):
        """What :func:`load_image` reads for ``name``: a path, or the member of its shard."""
        if self.folder is not None:
            return _join(self.folder, name)
        return self._members[name]

    def _scan_folder(self) -> list[str]:
        files = []
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, self.folder)
            for f in filenames:
                if _is_image(f):
                    files.append(f if rel == "." else f"{rel.replace(os.sep, '/')}/{f}")
        return files

    def _scan_shards(self) -> list[str]:
        members = {}
        for shard in self.shards:
            # Mode "r:" (no compression): the offsets must point into the file itself.  Iterating
            # reads only the headers, seeking over each image.
            try:
                with tarfile.open(shard, "r:") as tar:
                    for info in tar:
                        name = info.name.removeprefix("./").removeprefix(PASS_FOLDER + "/")
                        if not (info.isreg() and _is_image(name.rsplit("/", 1)[-1])):
                            continue
                        _check_relative(name, shard, PASS_FOLDER)
                        if name in members:
                            raise ValueError(f"{shard}: {info.name} is also in {members[name].archive}")
                        members[name] = ArchiveMember(shard, info.name, info.offset_data, info.size)
            except (tarfile.TarError, EOFError) as err:
                raise ValueError(f"{shard}: not a readable uncompressed tar file ({err}); "
                                 "the shard is truncated or corrupt") from err
        self._members = members
        return list(members)


def _stem(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(".", 1)[0]


def _metadata_hashes(path) -> set[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "hash" not in (reader.fieldnames or []):
            raise ValueError(f"{os.fspath(path)}: no 'hash' column (columns: {', '.join(reader.fieldnames or [])}); "
                             "expected PASS's pass_metadata.csv")
        return {row["hash"] for row in reader}


def pass_source(root, metadata=None) -> PassSource:
    """The PASS copy under ``root``: its folder ``PASS_dataset/``, else the shards ``PASS.<k>.tar``
    in it, else ``root`` itself as the image folder (``root`` may also be ``PASS_dataset/``).

    ``metadata``: ``pass_metadata.csv``; ``None`` uses it where the download puts it (in
    ``root``, or beside ``PASS_dataset/``) if it is there.  Raises ``FileNotFoundError`` naming
    what to put where.
    """
    base = os.fspath(root)
    if not os.path.isdir(base):
        raise FileNotFoundError(f"PASS folder {base!r} does not exist; it should hold the shards PASS.0.tar ... "
                                f"as downloaded, or the folder {PASS_FOLDER}/ they unpack to")
    if metadata is None:
        beside = [base, os.path.dirname(os.path.abspath(base))] if os.path.basename(os.path.abspath(base)) == PASS_FOLDER else [base]
        metadata = next((os.path.join(d, PASS_METADATA) for d in beside if os.path.isfile(os.path.join(d, PASS_METADATA))), None)
    elif not os.path.isfile(metadata):
        raise FileNotFoundError(f"PASS metadata file {os.fspath(metadata)!r} does not exist")
    if os.path.isdir(os.path.join(base, PASS_FOLDER)):
        return PassSource(folder=os.path.join(base, PASS_FOLDER), metadata=metadata)
    shards = sorted((f for f in os.listdir(base) if _PASS_SHARD.match(f)), key=lambda f: int(_PASS_SHARD.match(f)[1]))
    if shards:
        return PassSource(shards=[os.path.join(base, f) for f in shards], metadata=metadata)
    return PassSource(folder=base, metadata=metadata)


def pass_file_list(root, seed: int = 0, list_file=None) -> list[str]:
    """The seeded shuffle of all PASS image names (``root``: a :class:`PassSource` or a folder
    for :func:`pass_source`).

    Names are relative to ``PASS_dataset`` with ``/`` separators.  They are sorted first and
    then permuted with ``numpy.random.default_rng(seed)``, so the order depends only on the
    names and the seed, not on the form the images come in.  If ``list_file`` exists it is
    loaded instead of scanning (so Phase 1 and Phase 2 see the same images); if it is given
    and missing, the new list is saved there.
    """
    if list_file is not None and os.path.exists(list_file):
        return load_file_list(list_file)
    source = root if isinstance(root, PassSource) else pass_source(root)
    files = source.names()
    order = np.random.default_rng(seed).permutation(len(files))
    shuffled = [files[i] for i in order]
    if list_file is not None:
        save_file_list(shuffled, list_file)
    return shuffled


def pass_regions(n_total: int, n_parts: int = 10, part_size: int = 10_000, stride: int = 50_000,
                 xn_offset: int = 500_000, xn_count: int = 5_000):
    """Where the test parts and the X_n sample lie in the shuffled list, as (start, limit, take).

    Part k starts at ``stride * k`` and takes ``part_size`` decodable images, the sample starts
    at ``xn_offset`` and takes ``xn_count`` (:func:`write_shards` ``fill``).  Each may use the
    files up to where the next one starts (or the end of the list) to replace undecodable ones,
    so regions never share an image.  Raises :class:`ValueError` for a region that starts past
    the end of the list or does not fit before the next one.
    """
    if n_parts < 0 or part_size <= 0 or stride < 0 or xn_offset < 0 or xn_count <= 0:
        raise ValueError("n_parts, stride and xn_offset must be >= 0, part_size and xn_count > 0")
    wanted = [(f"PASS part {k}", k * stride, part_size) for k in range(n_parts)]
    wanted.append(("the PASS X_n sample", xn_offset, xn_count))
    starts = sorted({start for _, start, _ in wanted} | {n_total})
    regions = []
    for what, start, take in wanted:
        if start >= n_total:
            raise ValueError(f"{what} starts at {start}, but the file list has only {n_total} files")
        if sum(start == other for _, other, _ in wanted) > 1:
            raise ValueError(f"{what} starts at {start}, where another part or the X_n sample starts too")
        limit = next(b for b in starts if b > start)
        if limit - start < take:
            raise ValueError(f"{what} needs {take} images from position {start}, but "
                             + (f"the next part or the X_n sample starts at {limit}" if limit < n_total
                                else f"the file list ends at {n_total}"))
        regions.append((start, limit, take))
    return regions[:-1], regions[-1]


def _join(root, path):
    return os.path.join(os.fspath(root), *os.fspath(path).split("/")) if root is not None else os.fspath(path)


def load_pass_uint8(paths, size: int = 224, *, root=None, workers: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Decode and resize PASS images; returns (uint8 (n, size, size, 3) RGB, kept_paths, skipped_count).

    Files that cannot be decoded, whose Pillow mode is not ``'RGB'``, that have more than
    ``max_pixels`` pixels or lie outside ``root`` are skipped and counted.
    """
    paths = list(paths)

    def load(p):
        try:
            return load_image(_join(root, p), size, require_rgb=True, max_pixels=max_pixels, root=root)
        except ImageRefused:
            return None

    with _pixel_limit(max_pixels):
        images = _map(load, paths, workers)
    kept = [p for p, img in zip(paths, images) if img is not None]
    arrays = [img for img in images if img is not None]
    arr = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
    return arr, kept, len(paths) - len(kept)


def pass_preprocess(images) -> np.ndarray:
    """``keras.applications.vgg16.preprocess_input`` on uint8 RGB images, in float64.

    (RGB -> BGR, minus the ImageNet mean (103.939, 116.779, 123.68); range within
    :data:`PASS_INPUT_RANGE`.)
    """
    from keras.applications import vgg16

    x = np.array(images, dtype=np.float64)  # a fresh copy: preprocess_input works in place
    return np.asarray(vgg16.preprocess_input(x), dtype=np.float64)


def load_pass_images(paths, size: int = 224, *, root=None, workers: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS):
    """PASS network inputs: (float64 (n, size, size, 3), kept_paths, skipped_count).

    Each image is resized to ``size`` x ``size`` with Pillow's bilinear filter (as
    ``keras.utils.load_img`` does) and passed through ``vgg16.preprocess_input``.  Images that
    cannot be decoded or are not RGB (e.g. grayscale ``'L'``) are skipped and counted.
    """
    arr, kept, skipped = load_pass_uint8(paths, size, root=root, workers=workers, max_pixels=max_pixels)
    return pass_preprocess(arr), kept, skipped


def filled_parts(manifest: dict) -> tuple[list[tuple[int, int]], list[int]]:
    """Of the parts :func:`write_shards` filled (its ``fill`` segments): their bounds in
    stored-image order and how many files each refused (and replaced by the next ones)."""
    bounds, refused, begin = [], [], 0
    for segment in manifest["segments"]:
        bounds.append((begin, begin + segment["count"]))
        refused.append(sum(segment["start"] <= e["index"] < segment["stop"] for e in manifest["skipped"]))
        begin += segment["count"]
    return bounds, refused


def skip_reasons(*manifests: dict) -> dict[str, int]:
    """How many images the shard folders of ``manifests`` skipped, per kind of reason."""
    reasons: dict[str, int] = {}
    for manifest in manifests:
        for entry in manifest["skipped"]:
            reasons[entry["kind"]] = reasons.get(entry["kind"], 0) + 1
    return reasons


# --------------------------------------------------------------------------------------
# The image set a data rule writes
# --------------------------------------------------------------------------------------

# How each network's raw input is made from the stored uint8 RGB images.
PREPROCESS = {"caffe": caffe_preprocess, "vgg16": pass_preprocess}


@dataclass(eq=False)
class ImageSet:
    """Places365 or PASS as the data rule stores it: the test images and the X_n sample as
    shard folders (:func:`write_shards`) beside this manifest (``dataset.json``), the labels
    (if any) in an ``.npz`` beside it, and the test parts fixed when the images were chosen.

    It is read as :class:`exactsnn.datasets.Dataset` is (``test``, ``sample``, ``test_parts``),
    with the images put through the network's preprocessing (:data:`PREPROCESS`) when read.
    ``details`` holds what the logs and reports want to know of how the set was made (PASS:
    its file list, source and skipped files); it is saved beside the other keys.
    """

    name: str
    preprocess: str  # a key of PREPROCESS
    input_range: tuple[float, float]
    num_classes: int
    size: int  # images are size x size
    test_dir: str  # folder names, relative to the manifest's folder
    sample_dir: str
    labels: str | None  # .npz file name (key "labels"); None: agreement only
    test_count: int
    sample_count: int
    parts: list[tuple[int, int]]  # (start, stop) of each Phase 2 part
    skipped: int  # test images refused
    details: dict = field(default_factory=dict)
    root: Path | None = field(default=None, repr=False)  # the manifest's folder, set by load

    def __post_init__(self):
        if self.preprocess not in PREPROCESS:
            raise ValueError(f"image set {self.name}: preprocess {self.preprocess!r} is not one of {sorted(PREPROCESS)}")
        self.input_range = tuple(float(v) for v in self.input_range)
        self.parts = [tuple(int(v) for v in p) for p in self.parts]
        self._labels = None

    def save(self, path) -> None:
        """Write the manifest as JSON (sorted keys), atomically."""
        from .serialize import atomic

        keys = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("details", "root")}
        keys = {**keys, "input_range": list(self.input_range), **self.details}
        with atomic(path) as tmp:
            Path(tmp).write_text(json.dumps(keys, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path) -> "ImageSet":
        """Read a manifest written by :meth:`save`; its folders are found beside it."""
        path = Path(path)
        keys = json.loads(path.read_text())
        names = [f.name for f in fields(cls) if f.name not in ("details", "root")]
        missing = [name for name in names if name not in keys]
        if missing:
            raise ValueError(f"{path}: not an image-set manifest (no {', '.join(missing)})")
        details = {key: value for key, value in keys.items() if key not in names}
        return cls(**{name: keys[name] for name in names}, details=details, root=path.parent)

    @property
    def has_labels(self) -> bool:
        """Whether the test images have labels (Places365) or only agreement is measured (PASS)."""
        return self.labels is not None

    @property
    def n_test(self) -> int:
        """Number of test images."""
        return int(self.test_count)

    def _folder(self, name: str) -> Path:
        if self.root is None:
            raise ValueError(f"image set {self.name}: its folders are found beside its manifest; load it with ImageSet.load")
        return self.root / name

    def _label_array(self) -> np.ndarray:
        if self._labels is None:
            with np.load(self._folder(self.labels)) as f:
                self._labels = f["labels"]
        return self._labels

    def test_parts(self, n_parts: int) -> list[tuple[int, int]]:
        """(start, stop) of each Phase 2 part, as the data rule fixed them; ``n_parts`` is the
        benchmark's config, which must agree."""
        if len(self.parts) != n_parts:
            raise ValueError(
                f"{self.name}: the data stage made {len(self.parts)} test parts but the benchmark "
                f"has parts: {n_parts}; set parts: {len(self.parts)} in the config"
            )
        return self.parts

    def test(self, start: int, stop: int):
        """Network inputs and labels (None without) of the test images [start, stop)."""
        images = read_shards(self._folder(self.test_dir), start, stop)
        labels = self._label_array()[start : start + len(images)] if self.has_labels else None
        return PREPROCESS[self.preprocess](images), labels

    def sample(self, count: int | None = None, seed: int = 0, start: int = 0, stop: int | None = None) -> np.ndarray:
        """As :meth:`exactsnn.datasets.Dataset.sample`; only the shards holding the sample's
        images [start, stop) are read."""
        index = sample_index(self.sample_size(), count, seed)[start:stop]
        images = read_shards(self._folder(self.sample_dir), index[0], index[-1] + 1)
        return PREPROCESS[self.preprocess](images[index - index[0]])

    def sample_size(self, count: int | None = None) -> int:
        """How many images the X_n sample has (the stored ones, or a draw of ``count``)."""
        stored = int(shard_manifest(self._folder(self.sample_dir))["count"])
        return stored if count is None else min(count, stored)


def open_data(path: str | os.PathLike, test_samples: int | None = None) -> Dataset | ImageSet:
    """The dataset a data rule wrote: a :class:`exactsnn.datasets.Dataset` (``.npz``, its test
    set cut to the first ``test_samples``) or an :class:`ImageSet` (``.json``, always whole: its
    parts were fixed when it was written).  Here rather than in :mod:`.datasets`, which this
    module builds on."""
    if os.fspath(path).endswith(".npz"):
        return Dataset.load(path).subset(test=test_samples)
    return ImageSet.load(path)
