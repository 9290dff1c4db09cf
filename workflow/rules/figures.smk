rule plot_figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            figure_path("{fig}"),
            caption="../report/figure.rst",
            category="Figures",
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
        caption=figure_caption,
    shell:
        "python -m iterconv figure {wildcards.fig} --tables-dir {params.tables}"
        " --toy-dir results/toy --out {output.png} > {log} 2>&1"


rule plot_all:
    input:
        expand(rules.plot_figure.output.png, fig=[*FIGURES, *FAMILY_FIGURES]),
