rule prepare_dataset:
    output:
        manifest="results/data/{dataset}/manifest.json",
        train="results/data/{dataset}/train.npz",
        val="results/data/{dataset}/val.npz",
    log:
        "results/logs/prepare_dataset/{dataset}.log",
    conda:
        "../envs/iterconv.yaml"
    threads: 2
    params:
        command=prepare_command,
    shell:
        "python -m iterconv {params.command} > {log} 2>&1"


rule prepare_all:
    input:
        expand(rules.prepare_dataset.output.manifest, dataset=DATASETS),
