# Stage "figures": one test sample through the spiking network, as in the paper's Figure 4.


rule figures:
    input:
        snn=rules.phase2_network.output.networks[0],
        dataset=dataset_file,
    output:
        raster=report(
            "results/figures/{dataset}/{model}/raster.png",
            caption="../report/raster.rst",
            category="Figures",
            subcategory="{dataset} {model}",
        ),
        histogram=report(
            "results/figures/{dataset}/{model}/histogram.png",
            caption="../report/histogram.rst",
            category="Figures",
            subcategory="{dataset} {model}",
        ),
        potentials=report(
            "results/figures/{dataset}/{model}/potentials.png",
            caption="../report/potentials.rst",
            category="Figures",
            subcategory="{dataset} {model}",
        ),
        output=report(
            "results/figures/{dataset}/{model}/output.png",
            caption="../report/output.rst",
            category="Figures",
            subcategory="{dataset} {model}",
        ),
    params:
        sample=lookup(dpath="figures/sample", within=config),
        neurons=lookup(dpath="figures/neurons", within=config),
    log:
        "logs/figures/{dataset}/{model}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Figures for test sample {params.sample} of {wildcards.dataset} with {wildcards.model}"
    script:
        "../scripts/figures.py"
