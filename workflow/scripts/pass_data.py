"""Rule pass_data: one seeded shuffle of the PASS images, the test parts and the X_n sample as shards."""

from pathlib import Path

from wfutil import start

log = start(snakemake)

from exactsnn import imagesets

s, out = snakemake.params.settings, snakemake.output
try:
    source = imagesets.pass_source(s["root"], metadata=s["metadata"])
    files = imagesets.pass_file_list(source, seed=s["seed"])
    regions, sample_region = imagesets.pass_regions(
        len(files), snakemake.params.parts, s["part_size"], s["stride"], s["xn_offset"], s["xn_count"])
    log.info("PASS read from %s: %d images (%s); test parts (start, limit, images) %s; X_n sample %s", source.describe(),
             len(files), source.metadata and f"{source.unlisted} unlisted left out, {source.missing} listed not found",
             regions, sample_region)
    imagesets.save_file_list(files, out.files)
    images = [source.image(f) for f in files]
    shards = dict(size=s["size"], skip_invalid=True, workers=s["workers"], root=source.folder, max_pixels=s["max_pixels"])
    test = imagesets.write_shards(images, out.test, fill=regions, **shards)
    sample = imagesets.write_shards(images, out.sample, fill=[sample_region], **shards)
except (FileNotFoundError, ValueError) as err:
    hint = ("lower datasets.pass.part_size or raise .stride" if isinstance(err, imagesets.NotEnoughImages)
            else "config keys datasets.pass.root, .metadata, .part_size, .stride, .xn_offset, .xn_count")
    log.error("PASS: %s (%s)", err, hint)
    raise SystemExit(1)
parts, refused = imagesets.filled_parts(test)
log.info("parts (images, from files [start, stop), refused there and replaced by the next ones): %s",
         [(g["count"], g["start"], g["stop"], n) for g, n in zip(test["segments"], refused)])
for entry in test["skipped"] + sample["skipped"]:
    log.info("skipped %s: %s", entry["path"], entry["reason"])
imagesets.ImageSet(
    "pass", "vgg16", imagesets.PASS_INPUT_RANGE, 1000, s["size"], Path(out.test).name, Path(out.sample).name, None,
    test["count"], sample["count"], parts, len(test["skipped"]),
    details={"files": Path(out.files).name, "source": source.describe(), "skipped_sample": len(sample["skipped"]),
             "skipped_per_part": refused, "skipped_reasons": imagesets.skip_reasons(test, sample)},
).save(out.dataset)
