# Every run's job reads its resolved configuration from a file at the run's address, written for
# the whole preset by one local step; printed commands stay one short line.
localrules:
    write_run_configs,


rule write_run_configs:
    output:
        list(RUN_CONFIGS),
    log:
        f"{OUT}/logs/write_run_configs.log",
    run:
        write_configs(RUN_CONFIGS, log[0])


# The run directory keeps train.log, appended to by every attempt (resumed runs included);
# results/logs/train_run/ links to it beside the other jobs' logs.
rule train_run:
    input:
        config=ancient("results/runs/{run}/config.json"),
        data=run_dataset,
    output:
        best="results/runs/{run}/best.pt",
        metrics="results/runs/{run}/metrics.json",
        history="results/runs/{run}/history.csv",
    log:
        "results/logs/train_run/{run}.log",
    conda:
        "../envs/iterconv.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        speed=speed_flags(),
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.metrics),
    shell:
        "ln -sfn ../../runs/{wildcards.run}/train.log {log} &&"
        " python -m iterconv train --config {input.config} --data {params.data} --out {params.out}"
        " --threads {threads} {params.speed} >> {params.out}/train.log 2>&1"


rule train_all:
    input:
        expand(rules.train_run.output.metrics, run=RUNS),
