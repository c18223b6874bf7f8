# Stage "train": the ReLU network, trained with a seeded recipe, loaded from a weights file, or
# imported from an ONNX model.


rule train:
    wildcard_constraints:
        dataset=one_of(TRAINED),
    input:
        dataset=rules.data.output.dataset,
        weights=weights_input,
    output:
        model="results/train/{dataset}/{model}/model.keras",
        history="results/train/{dataset}/{model}/history.json",
    params:
        architecture=benchmark_value("architecture"),
        options=benchmark_value("architecture_options"),
        recipe=benchmark_value("recipe"),
        epochs=benchmark_value("epochs"),
        fraction=benchmark_value("fraction"),
        seed=benchmark_value("seed"),
        batch_size=benchmark_value("batch_size"),
        # Said in the message, so that a dry run shows which rows train and which load weights.
        source=lambda wc: (
            f"loading {weights_input(wc)[0]}, not training"
            if weights_input(wc)
            else f"training with the {BENCHMARKS[wc.dataset][wc.model]['recipe']} recipe"
        ),
    log:
        "logs/train/{dataset}/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "{wildcards.model} on {wildcards.dataset}: {params.source}"
    script:
        "../scripts/train.py"


# A benchmark whose weights are an ONNX model (PyTorch, ... exports): imported, checked against
# the dataset, and kept as a self-contained copy; no architecture is built and nothing is trained.
rule onnx_model:
    wildcard_constraints:
        dataset=one_of(TRAINED),
    input:
        dataset=rules.data.output.dataset,
        weights=weights_input,
    output:
        model="results/train/{dataset}/{model}/model.onnx",
        summary="results/train/{dataset}/{model}/onnx.json",
    log:
        "logs/train/{dataset}/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Importing {wildcards.model} for {wildcards.dataset} from its ONNX model"
    script:
        "../scripts/onnx_model.py"
