# iterconv: rebuild Lippl, Peters & Kriegeskorte (2024) for the preset chosen in params.yaml.
#   snakemake --cores N                      # the selected preset (default: demo)
#   snakemake --cores N --config preset=paper
from snakemake.utils import min_version, validate

from iterconv.pipeline.validate import check_params_file

min_version("9.0")

try:  # YAML errors, repeated keys and the schema, in one line, before Snakemake reads the files
    check_params_file("params.yaml")
except ValueError as err:
    raise WorkflowError(f"invalid params: {err}")


configfile: "params.yaml"
configfile: "preset.yaml"  # the choice of preset, kept apart so that DVC can set it


validate(config, "workflow/schemas/params.schema.yaml")


report: "workflow/report/workflow.rst"


# Cheap aggregation steps run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    prepare_all,
    train_all,
    analyze_all,
    plot_all,
    families_all,
    run_toy,
    collect_tables,
    collect_family_tables,
    check_claims,
    plot_figure,
    report_pages,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/families.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
        rules.report_pages.output,
