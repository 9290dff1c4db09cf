"""The claims of Lippl, Peters & Kriegeskorte (2024), declared as data: each entry is a claim
(id, text, paper reference, how it is tested) and the engine check that tests it on
``runs.csv`` and ``stages.csv``, or no check when the tables lack the runs it needs. Every claim
is listed whatever the preset trains: one whose compared groups have no run at all reads
``not tested by this preset`` (:func:`_requires`), with a note naming the runs it needs.
:func:`check_claims` evaluates them in order with one seeded generator."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from iterconv.report.engine import (
    Above,
    Check,
    ClaimResult,
    Near,
    Rows,
    difference_check,
    evaluate,
    level_check,
    not_tested,
    paired_check,
    rounded,
)
from iterconv.results import (
    VARIANT_NAMES,
    core_runs,
    coupling_label,
    dataset_name,
    main_dataset,
    ordinary_training,
    select,
    variant_runs,
    with_setting,
)

Entry = tuple[ClaimResult, Check | None]
ORDINARY = "0 (non-rec.)"  # the reference setting: uncoupled, non-recurrent initialisation
NO_DATASET = "none"  # the main dataset's id in claim ids when the tables hold no run
KEY_COLUMNS = ("run_id", "dataset", "variant", "width", "coupling", "init", "seed", "val_error")
# Descriptions of the runs that claims compare (a not-tested claim's note names them).
STANDARD_RUNS = "standard runs"
ORDINARY_RUNS = "standard runs at lambda = 0 (non-rec.)"
UNCOUPLED_REC_RUNS = "standard runs at lambda = 0 (rec.)"
COUPLED_REC_RUNS = "standard runs at lambda > 0 (rec.)"


def _claim(id_: str, claim: str, ref: str, note: str = "") -> ClaimResult:
    return ClaimResult(id=id_, claim=claim, paper_reference=ref, note=note)


def _requires(base: ClaimResult, check: Check | None, needs: dict[str, pd.DataFrame]) -> Entry:
    """``(base, check)``, or the claim marked not tested when the tables hold no row of one of
    the groups it needs (``needs``: description of the runs -> their rows)."""
    missing = [what for what, rows in needs.items() if rows.empty]
    return (not_tested(base, list(needs), missing), None) if missing else (base, check)


def _is(coupling: float, init: str) -> Rows:
    return lambda g: (g["coupling"] == coupling) & (g["init"] == init)


def _column_is(column: str, value: object) -> Rows:
    return lambda g: g[column] == value


def _level(df: pd.DataFrame, column: str, rule: Near | Above) -> Check:
    return partial(level_check, df=df, column=column, rule=rule)


def _difference(
    df: pd.DataFrame, value: str, high: Rows, low: Rows, strata: list[str], sign: float = 1.0
) -> Check:
    return partial(
        difference_check, df=df, value=value, high=high, low=low, strata=strata, sign=sign
    )


def _no_better(
    base: ClaimResult,
    df: pd.DataFrame,
    alternatives: list[str],
    margin: float,
    needs: tuple[str, str],
) -> Entry:
    """Claimed: no alternative setting has a lower error than the ordinary ResNet's by more than
    ``margin``. The best alternative (lowest mean error) is tested, stratified by width.
    ``needs`` describes the alternative runs and the reference runs."""
    df = with_setting(df)
    groups = {
        needs[0]: df[df["setting"].isin(alternatives)],
        needs[1]: df[df["setting"] == ORDINARY],
    }
    if any(rows.empty for rows in groups.values()):
        return _requires(base, None, groups)
    df = df.dropna(subset=["val_error"])
    means = df[df["setting"].isin(alternatives)].groupby("setting")["val_error"].mean()
    if means.empty:
        base.note += " No alternative run has a validation error."
        return base, None
    best = str(means.idxmin())
    base.measured = {"best_alternative": best, "margin": margin}
    base.note += (
        f" Best alternative: {best}; supported when the 95% interval of its error "
        f"minus the reference's excludes an improvement larger than {margin:.3f}."
    )
    return base, partial(
        difference_check,
        df=df,
        value="val_error",
        high=_column_is("setting", best),
        low=_column_is("setting", ORDINARY),
        strata=["width"],
        bound=Above(-margin, contradiction=0.0),  # any clear improvement contradicts
    )


def _variant_runs(variant: str) -> str:
    """How a note names the runs of a block type, e.g. "ICR runs"."""
    return f"{'standard' if variant == 'standard' else VARIANT_NAMES[variant]} runs"


def index_claims(runs: pd.DataFrame, stages: pd.DataFrame, ds: str) -> list[Entry]:
    """Claims about the indices of standard and spectrally normalised ResNets."""
    std = core_runs(runs, ds)
    ordinary = select(std, coupling=0.0, init="nonrecurrent")
    out: list[Entry] = [
        _requires(
            _claim(
                "ri_near_one",
                "Ordinary ResNets have a Recurrence Index close to 1.",
                "Fig 2b; Results, Recurrence Index",
                "Tolerance |mean RI - 1| <= 0.1 (the 95% interval must lie inside).",
            ),
            _level(ordinary, "RI", Near(1.0, 0.1)),
            {ORDINARY_RUNS: ordinary},
        ),
        _requires(
            _claim(
                "ri_near_one_coupled",
                "Gradient-coupled ResNets have a Recurrence Index centred around 1.",
                "S1 Fig a",
                "All coupling settings pooled; tolerance 0.1.",
            ),
            _level(std, "RI", Near(1.0, 0.1)),
            {STANDARD_RUNS: std},
        ),
        _requires(
            _claim(
                "ordinary_diverge",
                "Ordinary ResNets are not robust to extra evaluations of the last "
                "block (Divergence Index clearly above 0).",
                "Fig 2b; Results, Divergence Index",
                "Threshold DI > 0.1 (lower end of the 95% interval).",
            ),
            _level(ordinary, "DI", Above(0.1)),
            {ORDINARY_RUNS: ordinary},
        ),
        first_stage_claim(stages, ordinary),
    ]
    rec = select(std, init="recurrent")
    below_one = sorted(c for c in rec["coupling"].unique() if 0 < c < 1)
    needs = {
        "standard runs at 0 < lambda < 1 (rec.)": rec[rec["coupling"].isin(below_one)],
        UNCOUPLED_REC_RUNS: select(rec, coupling=0.0),
    }
    for index, sign, verb in (("CI", 1.0, "raises"), ("DI", -1.0, "lowers")):
        base = _claim(
            f"coupling_{verb}_{index.lower()}",
            f"Soft gradient coupling {verb} the "
            f"{'Convergence' if index == 'CI' else 'Divergence'} Index.",
            "Fig 3a",
        )
        if not below_one:
            out.append(_requires(base, None, needs))
            continue
        top = below_one[-1]
        base.note = (
            f"lambda = {top:g} (rec.) vs 0 (rec.), stratified by width; lambda = 1 is "
            "left out because the paper reports the trend does not hold there."
        )
        high, low = _is(top, "recurrent"), _is(0.0, "recurrent")
        out.append(_requires(base, _difference(rec, index, high, low, ["width"], sign), needs))
    widths = sorted(std["width"].unique())
    wider = {"standard runs at a second width": std[std["width"] > std["width"].min()]}
    for index, sign, verb in (("CI", 1.0, "higher"), ("DI", -1.0, "lower")):
        base = _claim(
            f"wider_{verb}_{index.lower()}",
            f"Wider networks have a {verb} {index}.",
            "Fig 3a; Results",
            "Widest vs narrowest width, stratified by coupling setting.",
        )
        if len(widths) < 2:
            out.append(_requires(base, None, wider))
            continue
        high, low = _column_is("width", widths[-1]), _column_is("width", widths[0])
        out.append((base, _difference(with_setting(std), index, high, low, ["setting"], sign)))
    for variant in ("icr", "pcr"):
        claim = _claim(
            f"{variant}_di_near_zero",
            f"Spectrally normalised {variant.upper()} networks converge "
            "(Divergence Index about 0).",
            "Fig 4a" if variant == "icr" else "S2 Fig a",
            "Tolerance |mean DI| <= 0.1 (the 95% interval must lie inside).",
        )
        normalised = core_runs(runs, ds, variant)
        check = _level(normalised, "DI", Near(0.0, 0.1))
        out.append(_requires(claim, check, {_variant_runs(variant): normalised}))
    icr = core_runs(runs, ds, "icr")
    both = with_setting(pd.concat([std, icr]))
    claim = _claim(
        "icr_lower_di",
        "ICR networks diverge less than standard ResNets (lower DI).",
        "Fig 4a vs Fig 3a",
        "Standard minus ICR, stratified by width and coupling.",
    )
    high, low = _column_is("variant", "standard"), _column_is("variant", "icr")
    check = _difference(both, "DI", high, low, ["width", "setting"])
    out.append(_requires(claim, check, {_variant_runs("icr"): icr, STANDARD_RUNS: std}))
    return out


def first_stage_claim(stages: pd.DataFrame, runs: pd.DataFrame) -> Entry:
    """The first stage has the lowest DI: per run, DI(stage 1) - mean DI(other stages) < 0."""
    base = _claim(
        "first_stage_lowest_di",
        "In ordinary ResNets the first stage has the lowest Divergence Index.",
        "Fig 2b; Results, Divergence Index",
        "Paired per run: DI of stage 1 minus the mean DI of the other stages.",
    )
    if runs.empty:
        return _requires(base, None, {ORDINARY_RUNS: runs})
    df = (
        stages[stages["run_id"].isin(runs["run_id"])].dropna(subset=["DI"])
        if len(stages)
        else stages
    )
    if df.empty or df["stage"].nunique() < 2:
        base.note += " Needs per-stage DI of at least two stages."
        return base, None
    first = df[df["stage"] == 1].set_index("run_id")["DI"]
    rest = df[df["stage"] != 1].groupby("run_id")["DI"].mean()
    d = (first - rest).dropna()
    base.n = {"runs": len(d), "seeds": int(runs["seed"].nunique())}
    base.measured = {
        "stage1_mean": rounded(first.mean()),
        "other_stages_mean": rounded(rest.mean()),
    }
    return base, partial(paired_check, differences=d, sign=-1.0)


def error_claims(runs: pd.DataFrame, ds: str, margin: float) -> list[Entry]:
    """Claims about error rates: coupling, convergence regularisation, variations."""
    out: list[Entry] = []
    datasets = [
        ds,
        *sorted(set(ordinary_training(select(runs, variant="standard"))["dataset"]) - {ds}),
    ]
    for name in datasets:
        std = core_runs(runs, name)
        rec = select(std, init="recurrent")
        top = max(rec["coupling"], default=0.0)
        base = _claim(
            f"coupling_raises_error:{name}",
            f"Higher coupling raises the error of non-convergent ResNets ({dataset_name(name)}).",
            "Fig 3b; S3 Fig",
            f"lambda = {top:g} (rec.) vs 0 (rec.), stratified by width." if top > 0 else "",
        )
        high, low = _is(top, "recurrent"), _is(0.0, "recurrent")
        needs = {
            COUPLED_REC_RUNS: rec[rec["coupling"] > 0],
            UNCOUPLED_REC_RUNS: select(rec, coupling=0.0),
        }
        out.append(_requires(base, _difference(rec, "val_error", high, low, ["width"]), needs))
        alts = sorted({coupling_label(c, "recurrent") for c in rec["coupling"] if c > 0})
        base = _claim(
            f"coupled_not_better:{name}",
            f"Gradient-coupled ResNets do not outperform ordinary ResNets ({dataset_name(name)}).",
            "Fig 3b; S3 Fig; Discussion",
        )
        out.append(_no_better(base, std, alts, margin, (COUPLED_REC_RUNS, ORDINARY_RUNS)))
    frames = {v: with_setting(core_runs(runs, ds, v)) for v in ("standard", "icr", "pcr")}
    for name, a, b, ref in (
        ("icr_raises_error", "icr", "standard", "Fig 4b"),
        ("pcr_raises_error", "pcr", "standard", "S2 Fig b"),
        ("pcr_worse_than_icr", "pcr", "icr", "S2 Fig b"),
    ):
        text = (
            f"Convergence regularisation ({a.upper()}) raises the error over {b} ResNets."
            if name != "pcr_worse_than_icr"
            else "PCR networks perform a bit worse than ICR networks."
        )
        base = _claim(name, text, ref, "Stratified by width and coupling setting.")
        high, low = _column_is("variant", a), _column_is("variant", b)
        df = pd.concat([frames[a], frames[b]])
        needs = {_variant_runs(a): frames[a], _variant_runs(b): frames[b]}
        out.append(
            _requires(base, _difference(df, "val_error", high, low, ["width", "setting"]), needs)
        )
    return out + variation_claims(runs, ds, margin)


VARIATIONS = {
    "bn_gamma": (0.1, "BN gamma = 0.1"),
    "kernel": ("triangular", "triangular kernel"),
    "couple_from": (5, "coupling from block 5"),
}


def variation_claims(runs: pd.DataFrame, ds: str, margin: float) -> list[Entry]:
    """The training variations do not beat ordinary ResNets; BN gamma 0.1 helps at 0.9."""
    base = select(runs, dataset=ds, variant="standard")
    ordinary = ordinary_training(base)
    reference = select(ordinary, coupling=0.0, init="nonrecurrent").assign(arm="ordinary")
    out: list[Entry] = []
    for column, (value, label) in VARIATIONS.items():
        varied = base[base[column] == value] if column in base else base.iloc[0:0]
        df = pd.concat([reference, varied.assign(arm="varied")])
        df = df[df["width"].isin(varied["width"].unique())]
        alts = sorted(
            {coupling_label(c, i) for c, i in zip(varied["coupling"], varied["init"], strict=True)}
            - {ORDINARY}
        )
        df.loc[df["arm"] == "varied", "init"] = "recurrent"  # label varied runs as alternatives
        claim = _claim(
            f"variation_not_better:{column}",
            f"Coupled ResNets with {label} do not outperform ordinary ResNets.",
            "S4 Fig; Discussion",
        )
        needs = (f"coupled standard runs with {label}", f"{ORDINARY_RUNS} of the same width")
        out.append(_no_better(claim, df, alts, margin, needs))
    gamma = base[base.get("bn_gamma", pd.Series(1.0, index=base.index)) == 0.1]
    df = pd.concat(
        [
            select(ordinary, coupling=0.9, init="recurrent").assign(arm="ordinary"),
            select(gamma, coupling=0.9, init="recurrent").assign(arm="gamma"),
        ]
    )
    claim = _claim(
        "bn_gamma_helps_at_0.9",
        "Initialising BN gamma at 0.1 improves performance at lambda = 0.9.",
        "Appendix D.1 (ICLR draft fig 8a)",
        "Ordinary minus gamma-0.1 error, lambda = 0.9 (rec.), stratified by width.",
    )
    high, low = _column_is("arm", "ordinary"), _column_is("arm", "gamma")
    needs = {
        "standard runs with BN gamma = 0.1 at lambda = 0.9 (rec.)": df[df["arm"] == "gamma"],
        "ordinary standard runs at lambda = 0.9 (rec.)": df[df["arm"] == "ordinary"],
    }
    out.append(_requires(claim, _difference(df, "val_error", high, low, ["width"]), needs))
    return out


VARIANT_CLAIMS = [  # id, claim, variant, index, claimed direction against the ResNet
    (
        "plain_ri_below_resnet",
        "Without skip-connections, dropping a block hurts more: a plain network's "
        "Recurrence Index is below a ResNet's.",
        "plain",
        "RI",
        "below",
    ),
    (
        "van_ri_below_resnet",
        "A VAN whose skip-connections were phased out (alpha -> 1) loses the ResNet's "
        "robustness to dropping a block: its Recurrence Index is below a ResNet's.",
        "van",
        "RI",
        "below",
    ),
    (
        "implicit_ci_above_resnet",
        "Implicit residual layers approach the output more gradually than explicit ones: "
        "an implicit ResNet's Convergence Index exceeds a ResNet's.",
        "implicit",
        "CI",
        "above",
    ),
]


# Beyond the paper: its indices on other architectures (the project's prediction from the
# paper's finding that ResNets do not learn convergent iterations): (id, claim, variant).
ARCHITECTURE_CLAIMS = [
    (
        "tv_resnet_diverges",
        "A torchvision ResNet, trained like the paper's networks, is not robust to extra "
        "evaluations of its last blocks either (Divergence Index clearly above 0).",
        "tv_resnet",
    ),
    (
        "tv_vit_diverges",
        "A Vision Transformer trained the same way is not robust to extra evaluations of its "
        "last encoder layer (Divergence Index clearly above 0).",
        "tv_vit",
    ),
]


def variant_claims(runs: pd.DataFrame, ds: str) -> list[Entry]:
    """Beyond the papers: the indices of the related papers' block types against the standard
    ResNet's, same dataset and training, stratified by width. These are this project's
    predictions, not claims of any of the papers."""
    df = variant_runs(runs, ds)
    out: list[Entry] = []
    for id_, text, variant, index, direction in VARIANT_CLAIMS:
        high, low = _column_is("variant", "standard"), _column_is("variant", variant)
        if direction == "above":
            high, low = low, high
        claim = _claim(id_, text, "beyond the papers (Reshniak & Webster 2019; the VAN paper)")
        needs = {
            f"{_variant_runs(variant)} at lambda = 0 (non-rec.)": select(df, variant=variant),
            ORDINARY_RUNS: select(df, variant="standard"),
        }
        out.append(_requires(claim, _difference(df, index, high, low, ["width"]), needs))
    for id_, text, variant in ARCHITECTURE_CLAIMS:
        rows = select(df, variant=variant)
        claim = _claim(
            id_,
            text,
            "beyond the paper (its indices on other architectures)",
            "Threshold DI > 0.1 (lower end of the 95% interval), as for ordinary ResNets.",
        )
        needs = {f"{_variant_runs(variant)} at lambda = 0 (non-rec.)": rows}
        out.append(_requires(claim, _level(rows, "DI", Above(0.1)), needs))
    return out


def check_claims(
    runs: pd.DataFrame, stages: pd.DataFrame, seed: int = 0, margin: float = 0.005
) -> tuple[str | None, list[ClaimResult]]:
    """(main dataset, every claim checked on it; error claims also on the other datasets).
    Every claim of the catalogue is listed, also when ``runs`` holds no run (no main dataset).

    Args:
        runs, stages: ``runs.csv`` and ``stages.csv`` as frames (``runs`` with the columns of
            ``iterconv collect``, which an empty one may lack).
        seed: seed of the resampling.
        margin: error difference (fraction, 0.005 = 0.5 points) below which a benefit of an
            alternative counts as no benefit.
    """
    if runs.empty:  # no run (perhaps no column either): every claim is listed as not tested
        runs = runs.reindex(columns=[*runs.columns, *(c for c in KEY_COLUMNS if c not in runs)])
    ds = main_dataset(runs)
    name = ds or NO_DATASET
    entries = (
        index_claims(runs, stages, name)
        + error_claims(runs, name, margin)
        + variant_claims(runs, name)
    )
    return ds, evaluate(entries, np.random.default_rng(seed))
