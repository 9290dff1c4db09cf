from iterconv.pipeline.targets import (
    REPORT_CATEGORIES,
    report_category,
    report_subcategory,
)


rule plot_figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            figure_path("{fig}"),
            caption="../report/figure.rst",
            category=lambda w: report_category(w.fig, FAMILY_FIGURES.get(w.fig)),
            subcategory=lambda w: report_subcategory(w.fig, FAMILY_FIGURES.get(w.fig)),
            labels={"figure": "{fig}"},
        ),
        pdf=figure_path("{fig}", "pdf"),
        caption=figure_path("{fig}", "caption.txt"),
    log:
        f"{OUT}/logs/plot_figure/{{fig}}.log",
    conda:
        "../envs/iterconv.yaml"
    params:
        tables=figure_tables,
        toy=lambda w, input: (
            f"--toy-dir {os.path.dirname(input.toy)}" if "toy" in input.keys() else ""
        ),
        caption=figure_caption,
    shell:
        "python -m iterconv figure {wildcards.fig} --tables-dir {params.tables} {params.toy}"
        " --out {output.png} > {log} 2>&1"


# The claims report and the tables as HTML pages: the report shows HTML results inline.
rule report_pages:
    input:
        claims=rules.check_claims.output.md,
        tables=ancient(TABLES_STAMP),
    output:
        claims=report(
            f"{OUT}/report/claims.html",
            caption="../report/claims.rst",
            category=REPORT_CATEGORIES["claims"],
            labels={"page": "claims of the papers, checked"},
        ),
        tables=report(
            f"{OUT}/report/tables.html",
            caption="../report/tables.rst",
            category=REPORT_CATEGORIES["tables"],
            labels={"page": "collected tables"},
        ),
    log:
        f"{OUT}/logs/report_pages.log",
    conda:
        "../envs/iterconv.yaml"
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables),
    shell:
        "python -m iterconv report-pages --claims {input.claims} --tables-dir {params.tables}"
        " --claims-out {output.claims} --tables-out {output.tables} > {log} 2>&1"


rule plot_all:
    input:
        expand(rules.plot_figure.output.png, fig=[*FIGURES, *FAMILY_FIGURES]),
        rules.report_pages.output,
