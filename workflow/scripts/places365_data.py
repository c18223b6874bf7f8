"""Rule places365_data: validation images (with labels) and the seeded X_n sample as uint8 shards."""

from pathlib import Path

from wfutil import start, write_npz, write_text

log = start(snakemake)

from exactsnn import imagesets

s, out = snakemake.params.settings, snakemake.output
try:  # a path leaving val_dir ('..', absolute) is refused with its line number
    for key, exists in (("val_dir", Path.is_dir), ("val_labels", Path.is_file), ("train_dir", Path.is_dir)):
        if not exists(Path(s[key])):
            raise FileNotFoundError(
                f"{s[key]} does not exist (config key datasets.places365.{key}). Put the validation images "
                "Places365_val_00000001.jpg ... in val_dir, places365_val.txt at val_labels and the training "
                "images (one folder per category) in train_dir.")
    val_paths, labels = imagesets.places365_val_list(s["val_dir"], s["val_labels"])
    if missing := [p for p in val_paths if not Path(p).is_file()]:
        raise FileNotFoundError(f"{len(missing)} validation images listed in {s['val_labels']} are missing, e.g. {missing[0]}")
    sample_paths, categories = imagesets.places365_train_sample(s["train_dir"], s["per_category"], s["seed"])
    log.info("Places365 read from the folders %s (validation, labels %s) and %s (training): %d validation images, "
             "X_n sample of %d images from %d categories", s["val_dir"], s["val_labels"], s["train_dir"],
             len(val_paths), len(sample_paths), len(set(categories)))
    # Every labelled image counts for the accuracy, so a refused one (undecodable, more than
    # max_pixels, a symlink leaving its folder) stops the job with its name and reason.
    shards = dict(size=s["size"], workers=s["workers"], max_pixels=s["max_pixels"])
    imagesets.write_shards(sample_paths, out.sample, root=s["train_dir"], **shards)
    test = imagesets.write_shards(val_paths, out.test, root=s["val_dir"], **shards)
except (FileNotFoundError, ValueError) as err:
    hint = " (config key datasets.places365.max_pixels sets the pixel limit)" if isinstance(err, imagesets.ImageRefused) else ""
    log.error("Places365: %s%s", err, hint)
    raise SystemExit(1)
write_npz(out.labels, labels=labels)
write_text(out.sample_list, "".join(f"{p}\t{c}\n" for p, c in zip(sample_paths, categories)))
parts = imagesets.split_parts(test["count"], s["part_size"])
log.info("%d parts: %s", len(parts), parts)
imagesets.ImageSet("places365", "caffe", imagesets.PLACES365_INPUT_RANGE, len(set(categories)), s["size"], Path(out.test).name,
                   Path(out.sample).name, Path(out.labels).name, test["count"], len(sample_paths), parts, 0).save(out.dataset)
