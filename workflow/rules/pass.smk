# Stages "data" and "train" for PASS: the images read as distributed (tar shards streamed, or
# PASS_dataset/), one seeded shuffle of the image list, the test parts and the X_n sample filled
# with decodable images as uint8 shards, and VGG16 with ImageNet weights. (Paths are params, not
# inputs, so a dry run needs no data.)


rule pass_data:
    output:
        dataset="results/data/pass/dataset.json",
        files="results/data/pass/files.txt",
        test=directory("results/data/pass/test"),
        sample=directory("results/data/pass/sample"),
    params:
        settings=lookup(dpath="datasets/pass", within=config, default={}),
        parts=lambda wc: max(row["parts"] for row in BENCHMARKS.get("pass", {}).values()),
    log:
        "logs/data/pass.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "PASS: shuffled image list, test parts and X_n sample (decodable images) as uint8 shards"
    script:
        "../scripts/pass_data.py"


rule pass_model:
    output:
        model="results/train/pass/{model}/model.keras",
        history="results/train/pass/{model}/history.json",
    params:
        weights=lambda wc: BENCHMARKS["pass"][wc.model]["weights"],
        # (the schema's default fills it in; None only where no benchmark uses PASS: no job then)
        size=lookup(dpath="datasets/pass/size", within=config, default=None),
    log:
        "logs/train/pass/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "PASS: VGG16 with ImageNet weights as {wildcards.model}"
    script:
        "../scripts/pass_model.py"
