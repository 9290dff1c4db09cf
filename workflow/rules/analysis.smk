rule compute_indices:
    input:
        best=ancient(rules.train_run.output.best),
        data=run_dataset,
    output:
        "results/indices/{analysis}/{run}.json",
    log:
        "results/logs/compute_indices/{analysis}/{run}.log",
    conda:
        "../envs/iterconv.yaml"
    threads: 1
    params:
        run=lambda wildcards, input: os.path.dirname(input.best),
        data=lambda wildcards, input: os.path.dirname(input.data),
        extra=config.get("indices", {}).get("extra_evaluations", 16),
        batch=config.get("indices", {}).get("batch_size", 1000),
    shell:
        "python -m iterconv indices --run {params.run} --data {params.data} --out {output}"
        " --extra {params.extra} --batch-size {params.batch} > {log} 2>&1"


rule run_toy:
    output:
        "results/toy/trajectories.csv",
    log:
        "results/logs/run_toy/toy.log",
    conda:
        "../envs/iterconv.yaml"
    params:
        out=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m iterconv toy --out {params.out} > {log} 2>&1"


# The declared output is the stamp: the tables beside it are swapped in as a whole and the
# summary replaced atomically by the command, so a failed job keeps the previous ones. Runs are
# passed by address (paths would overflow a shell command at the paper's scale).
rule collect_tables:
    input:
        metrics=ancient(expand(rules.train_run.output.metrics, run=RUNS)),
        indices=ancient(
            expand(rules.compute_indices.output[0], analysis=ANALYSIS, run=RUNS)
        ),
    output:
        TABLES_STAMP,
    log:
        f"{OUT}/logs/collect_tables.log",
    conda:
        "../envs/iterconv.yaml"
    params:
        runs=" ".join(RUNS),
        indices=lambda wildcards, input: os.path.dirname(input.indices[0]),
        tables=lambda wildcards, output: os.path.dirname(output[0]),
        summary=f"{OUT}/metrics.json",
    shell:
        "python -m iterconv collect --runs-dir results/runs --indices-dir {params.indices}"
        " --runs {params.runs} --tables-dir {params.tables} --summary {params.summary}"
        " --stamp {output} > {log} 2>&1"


rule check_claims:
    input:
        unpack(lambda wildcards: ancient_all(FAMILY_STAMPS)),
        tables=ancient(TABLES_STAMP),
    output:
        md=f"{OUT}/claims.md",
        json=f"{OUT}/claims.json",
    log:
        f"{OUT}/logs/check_claims.log",
    conda:
        "../envs/iterconv.yaml"
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables),
        families=family_claims_args,
    shell:
        "python -m iterconv claims --runs {params.tables}/runs.csv"
        " --stages {params.tables}/stages.csv --out {output.md} --out-json {output.json}"
        " --family {params.families} > {log} 2>&1"


rule analyze_all:
    input:
        FAMILY_STAMPS.values(),
        rules.collect_tables.output,
        rules.check_claims.output,
        rules.run_toy.output,
