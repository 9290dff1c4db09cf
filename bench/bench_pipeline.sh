#!/usr/bin/env bash
# Wall time of the workflow's own machinery (no training measured here, except the builds):
#
#   1. `snakemake -n --config preset=paper`  DAG of the full grid (1,206 runs), nothing built
#   2. micro preset: build, then `snakemake -n` (nothing to do), the first `dvc repro` after
#      the build (four Snakemake targets with nothing to do; records dvc.lock) and a second,
#      no-op `dvc repro` -- set up like tests/test_rebuilds.py, in a temporary copy of the
#      workflow
#   3. with --demo: the demo preset end to end, `snakemake --cores all` (~7 min on 2 cores)
#
# Usage: bench/bench_pipeline.sh [--demo | --reuse-results]   (PYTHON=... for the interpreter)
#   --reuse-results: instead of building the micro preset, copy the repository's built results
#   (results/, figures/, .snakemake/ metadata, modification times kept) and time the no-op
#   checks on them (seconds instead of ~7 min; the repository itself is still not written to)
# The repository is never written to: everything runs in a temporary copy, removed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
export PATH="$(dirname "$PY"):$PATH" # snakemake, dvc and the rules' `python` from the venv
DEMO=0
REUSE=0
[[ "${1:-}" == "--demo" ]] && DEMO=1
[[ "${1:-}" == "--reuse-results" ]] && REUSE=1

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LOG="$TMP/last.log"

copy_workflow() { # like tests/test_pipeline.py's workflow_copy: a stand-in for a clone
    local dest=$1 preset=$2
    mkdir -p "$dest"
    cp "$ROOT"/{Snakefile,params.yaml,preset.yaml,dvc.yaml,.gitignore} "$dest"/
    for d in workflow profiles src; do
        cp -r "$ROOT/$d" "$dest"/
    done
    find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +
    sed -i -E "s/^preset: \w+/preset: $preset/" "$dest/preset.yaml"
}

timed() { # timed LABEL DIR CMD...: run CMD in DIR, print its wall time
    local label=$1 dir=$2
    shift 2
    local t0 t1
    t0=$(date +%s.%N)
    if ! (cd "$dir" && "$@") >"$LOG" 2>&1; then
        echo "FAILED: $*" >&2
        tail -30 "$LOG" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    printf '%-52s %9.2f s\n' "$label" "$(echo "$t1 - $t0" | bc)"
}

echo "# $(date -Iseconds)  $(uname -srm)  $(nproc) CPUs  python $("$PY" -c 'import platform; print(platform.python_version())')"
echo "# snakemake $("$PY" -m snakemake --version)  $(dvc --version | head -1 | sed 's/^/dvc /')"

# 1. the paper preset's DAG
copy_workflow "$TMP/paper" paper
timed "snakemake -n --config preset=paper (DAG only)" "$TMP/paper" \
    "$PY" -m snakemake --cores 2 -n --config preset=paper
count() { grep -E "^$1 +[0-9]+" "$LOG" | head -1 | awk '{print $2}'; }
echo "    planned: $(count total) jobs, $(count train_run) train_run"

# 2. micro preset: build, then the no-op checks of both engines
W="$TMP/built"
if [[ $REUSE == 1 ]]; then
    copy_workflow "$W" "$(sed -n -E 's/^preset: (\w+).*/\1/p' "$ROOT/preset.yaml")"
    cp -a "$ROOT/results" "$ROOT/figures" "$ROOT/.snakemake" "$W"/
    echo "    reusing the repository's results (preset $(sed -n -E 's/^preset: //p' "$W/preset.yaml"))"
else
    copy_workflow "$W" micro
    timed "micro preset build (snakemake --cores 2)" "$W" "$PY" -m snakemake --cores 2
fi
timed "snakemake -n after the build" "$W" "$PY" -m snakemake --cores 2 -n
if ! grep -q "Nothing to be done" "$LOG"; then
    echo "    WARNING: snakemake planned $(count total) jobs after the build; dvc repro would run" \
        "them, so the dvc timings are skipped"
    exit 0
fi
(cd "$W" && git init -q && dvc init -q && dvc config core.analytics false)
timed "dvc repro, first after the build (records dvc.lock)" "$W" dvc repro
timed "dvc repro, second (no-op)" "$W" dvc repro
grep -q "up to date" "$LOG" || echo "    WARNING: the second dvc repro was not a no-op"
timed "dvc status" "$W" dvc status

# 3. optionally, the demo end to end
if [[ $DEMO == 1 ]]; then
    copy_workflow "$TMP/demo" demo
    timed "demo preset end to end (snakemake --cores all)" "$TMP/demo" \
        "$PY" -m snakemake --cores all
fi
