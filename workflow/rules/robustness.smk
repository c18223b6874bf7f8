# Stage "robustness": sweeps of zeta, spike-time noise and alpha mismatch, several seeded trials each.


localrules:
    robustness_table,


rule robustness_point:
    input:
        network=rules.phase1.output.network,
        reference=rules.phase1.output.reference,
        dataset=dataset_file,
    output:
        table="results/robustness/{dataset}/{model}/{knob}/{value}.csv",
    params:
        trials=lookup(dpath="robustness/trials", within=config),
        seed=lookup(dpath="robustness/seed", within=config),
        zeta=lookup(dpath="phase2/zeta", within=config),
        test_samples=lambda wc: lookup(dpath="robustness/test_samples", within=config)
        or BENCHMARKS[wc.dataset][wc.model]["test_samples"],
        engine=lookup(dpath="phase2/engine", within=config),
        batch_size=lookup(dpath="phase2/batch_size", within=config),
    log:
        "logs/robustness/{dataset}/{model}/{knob}/{value}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Robustness of {wildcards.model} on {wildcards.dataset}: {wildcards.knob} = {wildcards.value}"
    script:
        "../scripts/robustness_point.py"


rule robustness_table:
    input:
        points=robustness_points(),
    output:
        table=report(
            "results/robustness.csv",
            caption="../report/robustness_csv.rst",
            category="Robustness",
        ),
        html=report(
            "results/robustness.html",
            caption="../report/robustness.rst",
            category="Robustness",
        ),
    log:
        "logs/robustness/table.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Collecting the robustness sweeps"
    script:
        "../scripts/robustness_table.py"


rule robustness_plot:
    input:
        table=rules.robustness_table.output.table,
    output:
        plot=report(
            "results/robustness/{dataset}/{model}/{knob}.png",
            caption="../report/robustness_plot.rst",
            category="Robustness",
            subcategory="{dataset} {model}",
        ),
    params:
        dataset="{dataset}",
        model="{model}",
        knob="{knob}",
    log:
        "logs/robustness/{dataset}/{model}/{knob}_plot.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Plotting accuracy and agreement against {wildcards.knob} for {wildcards.model} on {wildcards.dataset}"
    script:
        "../scripts/robustness_plot.py"
