# The experiment families of the related papers: one job per configuration (shared by every
# preset that has it), then one table set per family and preset (figures: figures.smk; claims:
# check_claims).


rule run_family_job:
    input:
        unpack(family_job_data),
    output:
        "results/jobs/{family}/{job}/result.json",
    log:
        "results/jobs/{family}/{job}/run.log",
    conda:
        "../envs/iterconv.yaml"
    threads: 1
    params:
        config=family_job_config,
        data=family_data_args,
        out=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "python -m iterconv family-run {wildcards.family} --config-json {params.config:q}"
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
