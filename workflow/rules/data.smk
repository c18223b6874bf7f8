# Stage "data": one dataset as a single .npz (train/test arrays, labels, input range).


rule data:
    wildcard_constraints:
        dataset=one_of(TRAINED),
    output:
        dataset="results/data/{dataset}/dataset.npz",
    params:
        spec=dataset_spec,
    log:
        "logs/data/{dataset}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Loading dataset {wildcards.dataset}"
    script:
        "../scripts/data.py"
