# Stage "phase1": reference predictions, folding, weight scaling and the layer maxima X_n.


rule phase1:
    input:
        model=trained_model,
        dataset=dataset_file,
    output:
        network="results/phase1/{dataset}/{model}/network.npz",
        reference="results/phase1/{dataset}/{model}/reference.npz",
        summary="results/phase1/{dataset}/{model}/phase1.json",
    params:
        samples=lookup(dpath="phase1/samples", within=config),
        seed=lookup(dpath="phase1/seed", within=config),
        lower=lookup(dpath="phase1/lower", within=config),
        upper=lookup(dpath="phase1/upper", within=config),
        batch_size=lookup(dpath="phase1/batch_size", within=config),
        test_samples=benchmark_value("test_samples"),
    log:
        "logs/phase1/{dataset}/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Phase 1 (preprocessing) of {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/phase1.py"
