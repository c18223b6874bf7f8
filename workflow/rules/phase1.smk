# Stage "phase1": folding and weight scaling once, then X_n and the reference predictions on
# parts of the X_n sample and of the test set, then gathered (as Phase 2 is; phase1_parts).


rule phase1_network:
    input:
        model=trained_model,
        dataset=dataset_file,
    output:
        network="results/phase1/{dataset}/{model}/scaled.npz",
        memory="results/phase1/{dataset}/{model}/memory.json",
    params:
        lower=lookup(dpath="phase1/lower", within=config),
        upper=lookup(dpath="phase1/upper", within=config),
        batch_size=lookup(dpath="phase1/batch_size", within=config),
        test_samples=benchmark_value("test_samples"),
    log:
        "logs/phase1/{dataset}/{model}/network.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Phase 1: folding and scaling {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/phase1_network.py"


rule phase1_part:
    input:
        network=rules.phase1_network.output.network,
        memory=rules.phase1_network.output.memory,
        model=trained_model,
        dataset=dataset_file,
    output:
        part="results/phase1/{dataset}/{model}/parts/{part}.npz",
    params:
        parts=benchmark_value("phase1_parts"),
        samples=lookup(dpath="phase1/samples", within=config),
        seed=lookup(dpath="phase1/seed", within=config),
        batch_size=lookup(dpath="phase1/batch_size", within=config),
        test_samples=benchmark_value("test_samples"),
    resources:
        mem_mb=estimated_mem_mb,
    log:
        "logs/phase1/{dataset}/{model}/part{part}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Phase 1: X_n and reference predictions, part {wildcards.part} of {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/phase1_part.py"


# The gather keeps the stage's name: later stages read rules.phase1.output.
rule phase1:
    input:
        network=rules.phase1_network.output.network,
        memory=rules.phase1_network.output.memory,
        parts=phase1_parts,
    output:
        network="results/phase1/{dataset}/{model}/network.npz",
        reference="results/phase1/{dataset}/{model}/reference.npz",
        summary="results/phase1/{dataset}/{model}/phase1.json",
    log:
        "logs/phase1/{dataset}/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Phase 1: gathering X_n and the reference predictions of {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/phase1.py"
