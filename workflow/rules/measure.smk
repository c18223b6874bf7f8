# Stage "measure": accuracy, agreement, spikes, synaptic events and latency of one benchmark.


rule measure:
    input:
        reference=rules.phase1.output.reference,
        phase1=rules.phase1.output.summary,
        networks=rules.phase2_network.output.networks,
        simulation=rules.phase2_gather.output.simulation,
    output:
        metrics="results/measure/{dataset}/{model}/metrics.json",
    params:
        dataset="{dataset}",
        model="{model}",
    log:
        "logs/measure/{dataset}/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Measuring {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/measure.py"
