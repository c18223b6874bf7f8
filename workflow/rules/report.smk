# Stage "report": the results table, one row per benchmark.


localrules:
    table,
    embedded_figure,


rule table:
    input:
        metrics=all_metrics(),
    output:
        csv=report(
            "results/table.csv",
            caption="../report/table_csv.rst",
            category="Results table",
        ),
        markdown="results/table.md",
        html=report(
            "results/table.html",
            caption="../report/table.rst",
            category="Results table",
        ),
    params:
        published=published_values(),
    log:
        "logs/report/table.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Writing the results table"
    script:
        "../scripts/table.py"


# The report's front page shows every figure; it pastes each in from this file (see
# report/workflow.rst), since an image referred to by its path does not show there.
rule embedded_figure:
    input:
        "results/{figure}.png",
    output:
        "results/report/embedded/{figure}.html",
    log:
        "logs/report/embedded/{figure}.log",
    conda:
        "../../envs/exactsnn.yaml"
    message:
        "Embedding results/{wildcards.figure}.png for the report's front page"
    script:
        "../scripts/embedded_figure.py"
