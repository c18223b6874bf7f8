# Stages "data" and "train" for Places365: validation images and the X_n sample as uint8
# shards, and the Caffe VGG16 read without Caffe into Keras. (Paths are params, not inputs,
# so that a dry run plans the row without the data.)


rule places365_data:
    output:
        dataset="results/data/places365/dataset.json",
        labels="results/data/places365/labels.npz",
        sample_list="results/data/places365/sample.txt",
        test=directory("results/data/places365/test"),
        sample=directory("results/data/places365/sample"),
    params:
        settings=lookup(dpath="datasets/places365", within=config, default={}),
    log:
        "logs/data/places365.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Places365: validation images and the X_n sample as uint8 shards"
    script:
        "../scripts/places365_data.py"


rule places365_model:
    output:
        model="results/train/places365/{model}/model.keras",
        history="results/train/places365/{model}/history.json",
    params:
        prototxt=lambda wc: BENCHMARKS["places365"][wc.model]["prototxt"],
        caffemodel=lambda wc: BENCHMARKS["places365"][wc.model]["weights"],
    log:
        "logs/train/places365/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Places365: importing the Caffe model {wildcards.model} into Keras"
    script:
        "../scripts/places365_model.py"
