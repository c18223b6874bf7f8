"""The image-set test scenario's inputs, written into a working directory (argument 1):
data/places/ (Places365's validation folder with places365_val.txt, a category tree of
training images), data/pass/ (PASS as distributed: tar shards PASS.0.tar ... holding
PASS_dataset/), models/ (a tiny Caffe net, a tiny Keras VGG); config.yaml beside this file
names them.  Seeded: the same files every time."""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

TINY_PROTOTXT = """
name: "tiny_vgg"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
layer { name: "conv1_1" type: "Convolution" bottom: "data" top: "conv1_1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1_1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2_1" type: "Convolution" bottom: "pool1" top: "conv2_1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "relu2_1" type: "ReLU" bottom: "conv2_1" top: "conv2_1" }
layer { name: "pool2" type: "Pooling" bottom: "conv2_1" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc6" type: "InnerProduct" bottom: "pool2" top: "fc6" inner_product_param { num_output: 12 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc8a" type: "InnerProduct" bottom: "fc6" top: "fc8a" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc8a" top: "prob" }
"""


def write_caffe_net(folder: Path, rng) -> None:
    """A tiny VGG-like Caffe net (random weights) as deploy.prototxt + tiny.caffemodel."""
    from exactsnn.importers import caffe

    shapes = {
        "conv1_1": [(4, 3, 3, 3), (4,)],
        "conv2_1": [(6, 4, 3, 3), (6,)],
        "fc6": [(12, 6 * 4 * 4), (12,)],
        "fc8a": [(5, 12), (5,)],
    }
    classes = caffe.caffe_schema()
    net = classes["NetParameter"]()
    net.name = "tiny_vgg"
    for name, blob_shapes in shapes.items():
        layer = net.layer.add()
        layer.name = name
        layer.type = "Convolution" if len(blob_shapes[0]) == 4 else "InnerProduct"
        for shape in blob_shapes:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            values = rng.standard_normal(shape) / np.sqrt(fan_in) / (100.0 if name == "conv1_1" else 1.0)
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend(values.astype(np.float32).reshape(-1).tolist())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deploy.prototxt").write_text(TINY_PROTOTXT)
    (folder / "tiny.caffemodel").write_bytes(net.SerializeToString())


def write_image(path: Path, rng, mode="RGB", size=20) -> None:
    """A random RGB (or, mode "L", grayscale) image of size x size pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    (image.convert("L") if mode == "L" else image).save(path)


def write_image_sets(root: Path, rng) -> None:
    """Places365 and PASS in their layouts under root/places and root/pass."""
    # Places365-like: nested categories for the X_n sample, a labelled validation folder.
    for category in ("a/airfield", "b/bar", "b/bakery/shop", "c/canyon", "d/dock"):
        for k in range(3):
            write_image(root / "places" / "train" / category / f"{k:08d}.jpg", rng)
    lines = []
    for k in range(1, 10):
        name = f"Places365_val_{k:08d}.jpg"
        write_image(root / "places" / "val" / name, rng)
        lines.append(f"{name} {k % 5}")
    (root / "places" / "places365_val.txt").write_text("\n".join(lines) + "\n")
    # PASS as distributed: tar shards PASS.k.tar holding PASS_dataset/k/..., read without
    # unpacking; one corrupt file and one grayscale image among 24.
    unpacked = root / "unpacked" / "PASS_dataset"
    files = [unpacked / str(k % 4) / f"img{k:03d}.png" for k in range(24)]
    for k, path in enumerate(files):
        if k == 5:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not an image")
        else:
            write_image(path, rng, mode="L" if k == 11 else "RGB")
    (root / "pass").mkdir()
    for k in range(4):
        with tarfile.open(root / "pass" / f"PASS.{k}.tar", "w") as tar:
            tar.add(unpacked / str(k), arcname=f"PASS_dataset/{k}")
    shutil.rmtree(root / "unpacked")


def write_keras_net(path: Path) -> None:
    """A small VGG-like Keras model (random weights) for 16x16 RGB inputs."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(12, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(path)


def make(workdir: Path) -> None:
    """Every input of config.yaml, under `workdir`."""
    workdir = Path(workdir)
    rng = np.random.default_rng(0)
    write_image_sets(workdir / "data", rng)
    write_caffe_net(workdir / "models", rng)
    write_keras_net(workdir / "models" / "tiny_vgg.keras")


if __name__ == "__main__":
    make(Path(sys.argv[1]))
