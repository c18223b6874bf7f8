# Stage "report": the results table, one row per benchmark.


localrules:
    table,


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
