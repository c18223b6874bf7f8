# Stage "crosscheck": the converted networks re-simulated in Brian2, an independent simulator.


rule crosscheck:
    input:
        networks=rules.phase2_network.output.networks,
        dataset=dataset_file,
    output:
        table="results/crosscheck/{dataset}/{model}.csv",
    params:
        samples=lookup(dpath="crosscheck/samples", within=config),
        dt=lookup(dpath="crosscheck/dt", within=config),
    log:
        "logs/crosscheck/{dataset}/{model}.log",
    conda:
        "../../envs/crosscheck.yaml"
    message:
        "Brian2 cross-check of {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/crosscheck.py"


rule crosscheck_table:
    input:
        tables=crosscheck_files,
    output:
        table=report(
            "results/crosscheck.csv",
            caption="../report/crosscheck.rst",
            category="Cross-check",
        ),
    log:
        "logs/crosscheck/table.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Collecting the Brian2 cross-checks"
    script:
        "../scripts/crosscheck_table.py"
