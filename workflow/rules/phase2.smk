# Stage "phase2": the spiking network, simulated on parts of the test set, then gathered.


rule phase2_network:
    input:
        network=rules.phase1.output.network,
    output:
        networks=expand("results/phase2/{{dataset}}/{{model}}/snn_{neuron}.npz", neuron=NEURONS),
        memory="results/phase2/{dataset}/{model}/memory.json",
    params:
        zeta=lookup(dpath="phase2/zeta", within=config),
        neurons=NEURONS,
        batch_size=lookup(dpath="phase2/batch_size", within=config),
        memory_mb=lookup(dpath="phase2/memory_mb", within=config),
    log:
        "logs/phase2/{dataset}/{model}/network.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Phase 2: spiking networks (every neuron model) of {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/phase2_network.py"


rule phase2_part:
    input:
        networks=rules.phase2_network.output.networks,
        memory=rules.phase2_network.output.memory,
        dataset=dataset_file,
    output:
        part="results/phase2/{dataset}/{model}/parts/{part}.npz",
    params:
        parts=benchmark_value("parts"),
        test_samples=benchmark_value("test_samples"),
        engine=lookup(dpath="phase2/engine", within=config),
        batch_size=lookup(dpath="phase2/batch_size", within=config),
        relu_reference=lookup(dpath="phase2/relu_reference", within=config),
    resources:
        mem_mb=estimated_mem_mb,
    log:
        "logs/phase2/{dataset}/{model}/part{part}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Phase 2: simulating part {wildcards.part} of {wildcards.dataset} with {wildcards.model}"
    script:
        "../scripts/phase2_part.py"


rule phase2_gather:
    input:
        parts=phase2_parts,
    output:
        simulation="results/phase2/{dataset}/{model}/simulation.npz",
    params:
        parts=benchmark_value("parts"),
    log:
        "logs/phase2/{dataset}/{model}/gather.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Phase 2: gathering the parts of {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/phase2_gather.py"
