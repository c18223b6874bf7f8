"""Rule places365_data: validation images (with labels) and the seeded X_n sample as uint8 shards."""

import sys
from pathlib import Path


from wfutil import start, write_json, write_npz, write_text

log = start(snakemake)

from exactsnn import imagesets

s = snakemake.params.settings
out = snakemake.output
for key, kind in (("val_dir", "folder"), ("val_labels", "file"), ("train_dir", "folder")):
    path = Path(s[key])
    if not (path.is_dir() if kind == "folder" else path.is_file()):
        log.error(
            "Places365: %s %s does not exist (config key datasets.places365.%s). Put the validation "
            "images Places365_val_00000001.jpg ... in val_dir, places365_val.txt at val_labels and "
            "the training images (one folder per category) in train_dir.",
            kind, path, key,
        )
        sys.exit(1)

try:  # a path leaving val_dir ('..', absolute) is refused with its line number
    val_paths, labels = imagesets.places365_val_list(s["val_dir"], s["val_labels"])
except ValueError as err:
    log.error("Places365: %s", err)
    sys.exit(1)
missing = [p for p in val_paths if not Path(p).is_file()]
if missing:
    log.error("Places365: %d validation images listed in %s are missing, e.g. %s", len(missing), s["val_labels"], missing[0])
    sys.exit(1)
sample_paths, categories = imagesets.places365_train_sample(s["train_dir"], s["per_category"], s["seed"])
log.info("Places365 read from the folders %s (validation, labels %s) and %s (training): %d validation images, "
         "X_n sample of %d images from %d categories", s["val_dir"], s["val_labels"], s["train_dir"],
         len(val_paths), len(sample_paths), len(set(categories)))

# Every labelled image counts for the accuracy, so a refused one (undecodable, more than
# max_pixels, a symlink leaving its folder) stops the job with its name and reason.
try:
    imagesets.write_shards(sample_paths, out.sample, size=s["size"], workers=s["workers"],
                           root=s["train_dir"], max_pixels=s["max_pixels"])
    manifest = imagesets.write_shards(val_paths, out.test, size=s["size"], workers=s["workers"],
                                      root=s["val_dir"], max_pixels=s["max_pixels"])
except imagesets.ImageRefused as err:
    log.error("Places365: %s (config key datasets.places365.max_pixels sets the pixel limit)", err)
    sys.exit(1)
parts = imagesets.split_parts(manifest["count"], s["part_size"])

write_npz(out.labels, labels=labels)
write_text(out.sample_list, "".join(f"{p}\t{c}\n" for p, c in zip(sample_paths, categories)))
write_json(
    out.dataset,
    {
        "name": "places365",
        "preprocess": "caffe",
        "input_range": list(imagesets.PLACES365_INPUT_RANGE),
        "num_classes": len(set(categories)),
        "size": s["size"],
        "test_dir": Path(out.test).name,
        "sample_dir": Path(out.sample).name,
        "labels": Path(out.labels).name,
        "test_count": manifest["count"],
        "sample_count": len(sample_paths),
        "parts": parts,
        "skipped": 0,
    },
)
log.info("%d parts: %s", len(parts), parts)
