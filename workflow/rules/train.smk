rule train_run:
    input:
        data=run_dataset,
    output:
        best="results/runs/{run}/best.pt",
        metrics="results/runs/{run}/metrics.json",
        history="results/runs/{run}/history.csv",
    log:
        "results/runs/{run}/train.log",
    conda:
        "../envs/iterconv.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        config=run_config_json,
        speed=speed_flags(),
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.metrics),
    shell:
        "python -m iterconv train --config-json {params.config:q} --threads {threads} {params.speed}"
        " --data {params.data} --out {params.out} >> {log} 2>&1"


rule train_all:
    input:
        expand(rules.train_run.output.metrics, run=RUNS),
