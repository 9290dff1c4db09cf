# The experiment families of the related papers: one job per configuration (shared by every
# preset that has it), then one table set per family and preset (figures: figures.smk; claims:
# check_claims).


localrules:
    write_job_configs,


# The jobs' configurations as files at the jobs' addresses (see write_run_configs).
rule write_job_configs:
    output:
        list(JOB_CONFIGS),
    log:
        f"{OUT}/logs/write_job_configs.log",
    run:
        write_configs(JOB_CONFIGS, log[0])


rule run_family_job:
    input:
        unpack(family_job_data),
        config=ancient("results/jobs/{family}/{job}/config.json"),
    output:
        "results/jobs/{family}/{job}/result.json",
    log:
        "results/logs/run_family_job/{family}/{job}.log",
    conda:
        "../envs/iterconv.yaml"
    threads: 1
    params:
        data=family_data_args,
        out=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m iterconv family-run {wildcards.family} --config {input.config}"
        " --data {params.data} --out {params.out} --threads {threads} > {log} 2>&1"


# The declared output is the stamp: the tables beside it are swapped in as a whole by the
# command, so a failed job keeps the previous tables.
rule collect_family_tables:
    input:
        family_results,
    output:
        f"{OUT}/families/{{family}}/inputs-{{stamp}}.json",
    log:
        f"{OUT}/logs/collect_family_tables/{{family}}-{{stamp}}.log",
    conda:
        "../envs/iterconv.yaml"
    params:
        tables=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m iterconv family-collect {wildcards.family} --results {input}"
        " --tables-dir {params.tables} --stamp {output} > {log} 2>&1"


rule families_all:
    input:
        FAMILY_STAMPS.values(),
