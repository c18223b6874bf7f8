"""Rule pass_data: one seeded shuffle of the PASS images, the test parts and the X_n sample as shards."""

import sys
from pathlib import Path

from wfutil import start, write_json

log = start(snakemake)

from exactsnn import imagesets

s = snakemake.params.settings
out = snakemake.output
try:
    source = imagesets.pass_source(s["root"], metadata=s["metadata"])
    files = imagesets.pass_file_list(source, seed=s["seed"])
    parts, sample_region = imagesets.pass_regions(
        len(files), snakemake.params.parts, s["part_size"], s["stride"], s["xn_offset"], s["xn_count"]
    )
except (FileNotFoundError, ValueError) as err:
    log.error("PASS: %s (config keys datasets.pass.root, .metadata, .part_size, .stride, .xn_offset, .xn_count)", err)
    sys.exit(1)
log.info("PASS read from %s: %d images", source.describe(), len(files))
if source.metadata:
    log.info("%s: %d files it does not list left out, %d images it lists not found",
             source.metadata, source.unlisted, source.missing)
imagesets.save_file_list(files, out.files)
log.info("test parts (start, limit, images) %s; X_n sample %s", parts, sample_region)

images = [source.image(f) for f in files]
shard_options = dict(size=s["size"], skip_invalid=True, workers=s["workers"], root=source.folder,
                     max_pixels=s["max_pixels"])
try:
    test = imagesets.write_shards(images, out.test, fill=parts, **shard_options)
    sample = imagesets.write_shards(images, out.sample, fill=[sample_region], **shard_options)
except imagesets.NotEnoughImages as err:
    log.error("PASS: a part could not be filled: %s; lower datasets.pass.part_size or raise .stride", err)
    sys.exit(1)

# Every part holds part_size images, so its bounds in stored-image order follow from its number;
# the candidates it used (files [start, stop) of files.txt) are longer by its refused files.
bounds, per_part, begin = [], [], 0
for k, segment in enumerate(test["segments"]):
    refused = sum(segment["start"] <= e["index"] < segment["stop"] for e in test["skipped"])
    bounds.append((begin, begin + segment["count"]))
    per_part.append(refused)
    log.info("part %d: %d images from files [%d, %d), %d refused and replaced by the next ones",
             k, segment["count"], segment["start"], segment["stop"], refused)
    begin += segment["count"]
reasons = {}
for entry in test["skipped"] + sample["skipped"]:
    reasons[entry["kind"]] = reasons.get(entry["kind"], 0) + 1
    log.info("skipped %s: %s", entry["path"], entry["reason"])

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
        "source": source.describe(),
        "skipped": len(test["skipped"]),
        "skipped_sample": len(sample["skipped"]),
        "skipped_per_part": per_part,
        "skipped_reasons": reasons,
    },
)
