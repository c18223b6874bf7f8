"""Rule pass_data: one seeded shuffle of the PASS files, the test parts and the X_n sample as shards."""

import sys
from pathlib import Path

from wfutil import start, write_json

log = start(snakemake)

from exactsnn import imagesets

s = snakemake.params.settings
out = snakemake.output
root = Path(s["root"])
if not root.is_dir():
    log.error(
        "PASS: image folder %s does not exist (config key datasets.pass.root); it should hold "
        "the PASS images in the sub-folders 0 ... 19.", root
    )
    sys.exit(1)

files = imagesets.pass_file_list(root, seed=s["seed"])
imagesets.save_file_list(files, out.files)
parts = imagesets.pass_parts(snakemake.params.parts, s["part_size"], s["stride"], n_total=len(files))
first, stop = imagesets.pass_xn_range(s["xn_offset"], s["xn_count"], n_total=len(files))
log.info("%d files; test parts %s; X_n sample [%d, %d)", len(files), parts, first, stop)

test_files = [f for a, b in parts for f in files[a:b]]
shard_options = dict(size=s["size"], skip_invalid=True, workers=s["workers"], root=root, max_pixels=s["max_pixels"])
test = imagesets.write_shards([root / f for f in test_files], out.test, **shard_options)
sample = imagesets.write_shards([root / f for f in files[first:stop]], out.sample, **shard_options)

# Part k holds the images of its files that could be decoded: bounds in stored-image order.
skipped = sorted(entry["index"] for entry in test["skipped"])
bounds, per_part, begin, offset = [], [], 0, 0
for k, (a, b) in enumerate(parts):
    end = offset + (b - a)
    refused = sum(offset <= i < end for i in skipped)
    kept = (b - a) - refused
    bounds.append((begin, begin + kept))
    per_part.append(refused)
    log.info("part %d: %d images, %d refused", k, kept, refused)
    begin, offset = begin + kept, end
reasons = {}
for entry in test["skipped"] + sample["skipped"]:
    kind = entry.get("kind", "undecodable or not RGB")  # manifests before max_pixels had no kind
    reasons[kind] = reasons.get(kind, 0) + 1
    log.info("skipped %s: %s", entry["path"], entry.get("reason", "undecodable or not RGB"))

write_json(
    out.dataset,
    {
        "name": "pass",
        "preprocess": "vgg16",
        "input_range": list(imagesets.PASS_INPUT_RANGE),
        "num_classes": 1000,
        "size": s["size"],
        "test_dir": Path(out.test).name,
        "sample_dir": Path(out.sample).name,
        "labels": None,
        "test_count": test["count"],
        "sample_count": sample["count"],
        "parts": bounds,
        "files": Path(out.files).name,
        "skipped": len(test["skipped"]),
        "skipped_sample": len(sample["skipped"]),
        "skipped_per_part": per_part,
        "skipped_reasons": reasons,
    },
)
