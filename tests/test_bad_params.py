"""Invalid params are rejected before any job starts, in one line naming the key and what is
allowed: a catalogue by class of mistake, the YAML reader, and Snakemake's dry run."""

import copy
import hashlib
from pathlib import Path

import pytest
from params_helpers import PARAMS, with_preset
from test_pipeline import snakemake, workflow_copy

from iterconv.pipeline import ParamsError
from iterconv.pipeline.grid import expand_runs
from iterconv.pipeline.memory import MEMORY_LIMIT_BYTES, training_memory_bytes
from iterconv.pipeline.params import read_params
from iterconv.pipeline.validate import check_params_file, validate_params

COUPLING = "presets.demo.sweeps[0] (demo_coupling)"
CONVERGENT = "presets.demo.sweeps[1] (demo_convergent)"
S0 = ("presets", "demo", "sweeps", 0)
S1 = ("presets", "demo", "sweeps", 1)
FAMILIES = ("presets", "demo", "families")
DEMO_FIXED = {"stages": 3, "blocks": 4, "width": 8}


def changed(*edits: tuple[tuple, object]) -> dict:
    """The demo preset of params.yaml with each (path of keys, value) set; value None deletes."""
    params = with_preset("demo")
    for path, value in edits:
        node = params
        for key in path[:-1]:
            node = node[key]
        if value is None:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return params


def fixed(**settings) -> dict:
    return changed(((*S1, "fixed"), {**DEMO_FIXED, **settings}))


INF, NAN = float("inf"), float("nan")
SOURCE = ("datasets", "demo_digits")
LARGE_SPLIT_DIGITS = {"source": "digitclutter", "n_digits": 2, "n_train": 48, "n_val": 16}

# class -> {case: (params, the key the message names, what it says is allowed)}
CASES = {
    "1 mu above 1 for icr/pcr": {
        "fixed mu": (fixed(mu=1.5), f"{CONVERGENT}.fixed.mu", "(0, 1]"),
        "grid mu with pcr": (
            changed(((*S1, "grid", "variant"), [{"variant": "pcr", "mu": 2.0}])),
            f"{CONVERGENT}.grid.variant[0].mu",
            "(0, 1]",
        ),
        "mu zero": (fixed(mu=0), f"{CONVERGENT}.fixed.mu", "> 0"),
    },
    "2 milestones": {
        "beyond epochs": (
            changed((("recipes", "demo", "milestones"), [4, 5])),
            "recipes.demo.milestones",
            "[1, 4]",
        ),
        "equal to epochs": (
            changed((("recipes", "demo", "milestones"), [5])),
            "recipes.demo.milestones",
            "never takes effect",
        ),
        "unsorted": (
            changed((("recipes", "demo", "milestones"), [3, 1])),
            "recipes.demo.milestones",
            "increasing",
        ),
        "repeated": (
            changed((("recipes", "demo", "milestones"), [2, 2])),
            "recipes.demo.milestones",
            "without repeated entries",
        ),
        "grid beyond epochs": (
            changed(((*S0, "grid", "milestones"), [[2], [9]])),
            f"{COUPLING}.grid.milestones[1]",
            "[1, 4]",
        ),
        "default beyond short epochs": (
            changed((("recipes", "demo", "milestones"), None)),
            f"{COUPLING}.milestones (not set: the default)",
            "[1, 4]",
        ),
    },
    "3 infinite or NaN": {
        "inf lr": (changed((("recipes", "demo", "lr"), INF)), "recipes.demo.lr", "finite"),
        "nan grid coupling": (
            changed(((*S0, "grid", "coupling"), [NAN])),
            f"{COUPLING}.grid.coupling[0]",
            "finite",
        ),
        "-inf in a family": (
            changed((("presets", "demo", "families", "shortcut", "tol"), -INF)),
            "presets.demo.families.shortcut.tol",
            "finite",
        ),
        "nan in another preset": (
            changed((("presets", "paper", "sweeps", 1, "fixed"), {"bn_gamma": NAN})),
            "presets.paper.sweeps[1] (cifar100).fixed.bn_gamma",
            "finite",
        ),
    },
    "4 batch larger than the training split": {
        "digitclutter n_train": (
            changed((("recipes", "demo", "batch_size"), 4096)),
            "recipes.demo.batch_size",
            "at most 3072",
        ),
        "archive subset": (
            changed((SOURCE, {"source": "cifar10", "n_train": 32})),
            "recipes.demo.batch_size",
            "at most 32",
        ),
        "archive split from a grid": (
            changed(
                (SOURCE, {"source": "mnist"}),
                ((*S0, "grid", "batch_size"), [64, 50_001]),
                ((*S0, "fixed"), {**DEMO_FIXED, "stages": 1}),
            ),
            f"{COUPLING}.grid.batch_size[1]",
            "at most 50000",
        ),
        "digitclutter default n_train": (
            changed((SOURCE, {"source": "digitclutter"}), ((*S0, "grid", "batch_size"), [100_001])),
            f"{COUPLING}.grid.batch_size[0]",
            "at most 100000",
        ),
    },
    "5 too much memory": {
        "width": (
            changed(((*S0, "fixed"), {**DEMO_FIXED, "width": 100_000})),
            f"{COUPLING}: run demo_digits-standard-3x4-w100000",
            "141 GB",
        ),
        "blocks from a grid": (
            changed(((*S0, "grid", "blocks"), [4, 100_000])),
            f"{COUPLING}: run demo_digits-standard-3x100000-w8",
            "141 GB",
        ),
        "stages and batch": (
            changed(
                ((*S0, "fixed"), {**DEMO_FIXED, "stages": 12, "batch_size": 3072}),
            ),
            f"{COUPLING}: run demo_digits-standard-12x4-w8",
            "141 GB",
        ),
    },
    "6 seeds outside what torch accepts": {
        "2**63 in a grid": (
            changed(((*S0, "grid", "seed"), [0, 2**63])),
            f"{COUPLING}.grid.seed[1]",
            "<= 2**63 - 1",
        ),
        "negative in fixed": (fixed(seed=-1), f"{CONVERGENT}.fixed.seed", ">= 0"),
        "float": (changed(((*S0, "grid", "seed"), [1.5])), f"{COUPLING}.grid.seed[0]", "integer"),
        "integral float": (
            changed(((*S0, "grid", "seed"), [1.0])),
            f"{COUPLING}.grid.seed[0]",
            "integer",
        ),
        "per-epoch seeds overflow": (
            changed(((*S0, "grid", "seed"), [2**62])),
            f"{COUPLING}.grid.seed[0]",
            "per-epoch seeds",
        ),
        "dataset seed 2**63": (
            changed(((*SOURCE, "seed"), 2**63)),
            "datasets.demo_digits.seed",
            "<= 2**63 - 1",
        ),
        "dataset seed negative": (
            changed(((*SOURCE, "seed"), -3)),
            "datasets.demo_digits.seed",
            ">= 0",
        ),
    },
    "7 invalid grid values": {
        "negative epochs": (
            changed(((*S0, "grid", "epochs"), [5, -1])),
            f"{COUPLING}.grid.epochs[1]",
            ">= 1",
        ),
        "negative lr": (
            changed(((*S0, "grid", "lr"), [0.1, -0.05])),
            f"{COUPLING}.grid.lr[1]",
            "> 0",
        ),
        "mapping value": (
            changed(
                (
                    (*S0, "grid", "coupling"),
                    [{"coupling": 0.0, "init": "recurrent", "bn_gamma": -1}],
                )
            ),
            f"{COUPLING}.grid.coupling[0].bn_gamma",
            "> 0",
        ),
        "momentum": (
            changed(((*S0, "grid", "momentum"), [1.0])),
            f"{COUPLING}.grid.momentum[0]",
            "< 1",
        ),
        "wrong type": (
            changed(((*S0, "grid", "width"), ["8"])),
            f"{COUPLING}.grid.width[0]",
            "integer",
        ),
        "unknown setting in a mapping": (
            changed(((*S0, "grid", "coupling"), [{"coupling": 0.0, "inti": "recurrent"}])),
            f"{COUPLING}.grid.coupling[0]",
            "did you mean 'init'",
        ),
    },
    "8 training split larger than the dataset": {
        "cifar10 60000": (
            changed((("datasets", "cifar10", "n_train"), 60_000)),
            "datasets.cifar10.n_train",
            "45000",
        ),
        "cifar100 45001": (
            changed((("datasets", "cifar100", "n_train"), 45_001)),
            "datasets.cifar100.n_train",
            "45000",
        ),
        "mnist 50001": (
            changed((("datasets", "mnist", "n_train"), 50_001)),
            "datasets.mnist.n_train",
            "50000",
        ),
        "fashion_mnist 60000": (
            changed((("datasets", "fashion_mnist", "n_train"), 60_000)),
            "datasets.fashion_mnist.n_train",
            "50000",
        ),
    },
    "9 keys that would be ignored": {
        "dataset in grid": (
            changed(((*S0, "grid", "dataset"), ["demo_digits"])),
            f"{COUPLING}.grid.dataset",
            "datasets",
        ),
        "dataset in a grid mapping": (
            changed(((*S0, "grid", "coupling"), [{"coupling": 0.0, "dataset": "cifar10"}])),
            f"{COUPLING}.grid.coupling[0]",
            "datasets",
        ),
        "dataset in fixed": (fixed(dataset="demo_digits"), f"{CONVERGENT}.fixed", "datasets"),
        "n_val for cifar10": (
            changed((("datasets", "cifar10", "n_val"), 1000)),
            "datasets.cifar10.n_val",
            "only n_train",
        ),
        "seed for mnist": (
            changed((("datasets", "mnist", "seed"), 1)),
            "datasets.mnist.seed",
            "only n_train",
        ),
        "n_digits for cifar100": (
            changed((("datasets", "cifar100", "n_digits"), 2)),
            "datasets.cifar100.n_digits",
            "only n_train",
        ),
    },
    "11 names that escape or do not match": {
        "dataset ../x": (
            changed((("datasets", "../x"), {"source": "cifar10"})),
            "datasets: name '../x'",
            "[A-Za-z0-9_]+",
        ),
        "dataset a/b": (
            changed((("datasets", "a/b"), {"source": "cifar10"})),
            "datasets: name 'a/b'",
            "[A-Za-z0-9_]+",
        ),
        "preset a-b": (
            changed((("presets", "a-b"), copy.deepcopy(PARAMS["presets"]["micro"]))),
            "presets: name 'a-b'",
            "[A-Za-z0-9_]+",
        ),
        "preset named like a store": (
            changed((("presets", "runs"), copy.deepcopy(PARAMS["presets"]["micro"]))),
            "presets: name 'runs'",
            "data, runs",
        ),
        "sweep ../x": (
            changed(((*S0, "name"), "../x")),
            "presets.demo.sweeps[0] (../x).name",
            "[A-Za-z0-9_]+",
        ),
        "repeated sweep name": (
            changed(((*S1, "name"), "demo_coupling")),
            "presets.demo.sweeps[1] (demo_coupling).name",
            "unique",
        ),
        "sweep dataset a/b": (
            changed(((*S0, "datasets"), ["a/b"])),
            f"{COUPLING}.datasets[0]",
            "[A-Za-z0-9_]+",
        ),
        "family dataset ../x": (
            changed((("presets", "demo", "families", "van", "datasets"), ["../x"])),
            "presets.demo.families.van.datasets[0]",
            "[A-Za-z0-9_]+",
        ),
    },
    "12 helpful messages": {
        "unknown recipe key": (
            changed((("recipes", "demo", "epcohs"), 3)),
            "unknown key 'epcohs' in recipes.demo",
            "valid keys: batch_size, blocks",
        ),
        "unknown top-level key": (
            changed((("colour",), "red")),
            "unknown key 'colour'",
            "valid keys: archives, couplings, datasets",
        ),
        "unknown grid setting": (
            changed(((*S0, "grid", "depth"), [3])),
            f"unknown run setting 'depth' in {COUPLING}.grid",
            "valid keys:",
        ),
        "n_digits 11": (
            changed(((*SOURCE, "n_digits"), 11)),
            "datasets.demo_digits.n_digits",
            'an integer from 1 to 10 or a range "lo-hi"',
        ),
        "n_digits bad range": (
            changed(((*SOURCE, "n_digits"), "2to5")),
            "datasets.demo_digits.n_digits",
            'an integer from 1 to 10 or a range "lo-hi"',
        ),
        "n_digits reversed range": (
            changed(((*SOURCE, "n_digits"), "5-2")),
            "datasets.demo_digits.n_digits",
            "lo <= hi",
        ),
        "number written as text": (
            changed((("recipes", "demo", "weight_decay"), "1e-4")),
            "recipes.demo.weight_decay",
            "write 1.0e-4",
        ),
    },
    "13 family settings": {
        "unknown key": (
            changed(((*FAMILIES, "van", "depth"), [2])),
            "unknown key 'depth' in presets.demo.families.van (did you mean 'depths'?)",
            "valid keys: alpha_init, alpha_momentum, archs",
        ),
        "wrong type": (
            changed(((*FAMILIES, "shortcut", "trials"), "many")),
            "presets.demo.families.shortcut.trials",
            "an integer >= 1",
        ),
        "out of range": (
            changed(((*FAMILIES, "van", "momentum"), 1.5)),
            "presets.demo.families.van.momentum",
            "a number >= 0 and <= 0.999",
        ),
        "nested list item": (
            changed(((*FAMILIES, "implicit", "function", "thetas"), [0, 2])),
            "presets.demo.families.implicit.function.thetas[1]",
            "a number >= 0 and <= 1",
        ),
        "choice": (
            changed(((*FAMILIES, "implicit", "spirals", "method"), "newton")),
            "presets.demo.families.implicit.spirals.method",
            "one of anderson, picard",
        ),
        "null for a number": (
            changed(((*FAMILIES, "van", "n_train"), 1)),
            "presets.demo.families.van.n_train",
            "an integer >= 2 or null",
        ),
        "keys that disagree": (
            changed(((*FAMILIES, "shortcut", "eta"), 0.5)),
            "presets.demo.families.shortcut.eta",
            "need eta < 4 pi / (k + pi - 1)",
        ),
        "no example": (
            changed(((*FAMILIES, "implicit"), {})),
            "presets.demo.families.implicit",
            "name at least one example: function, spirals",
        ),
    },
}
CATALOGUE = {f"{cls}: {case}": spec for cls, cases in CASES.items() for case, spec in cases.items()}


def test_every_class_has_at_least_two_cases():
    assert all(len(cases) >= 2 for cases in CASES.values())


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_invalid_params_are_rejected_naming_the_key_and_what_is_allowed(case):
    params, key, allowed = CATALOGUE[case]
    with pytest.raises(ParamsError) as err:
        validate_params(params)
    message = str(err.value)
    assert key in message and allowed in message, message
    assert "\n" not in message
    assert "Additional properties" not in message and "any of the given" not in message


def test_every_preset_of_params_yaml_validates():
    for name in PARAMS["presets"]:
        validate_params(with_preset(name))
    assert len(expand_runs(with_preset("paper"))) == 1209


def test_the_papers_largest_runs_fit_with_room():
    runs = expand_runs(with_preset("paper")).values()
    largest = max(
        training_memory_bytes(r.config.width, r.config.stages, r.config.blocks, 128, "cifar100")
        for r in runs
    )
    assert largest < MEMORY_LIMIT_BYTES / 10


def test_the_memory_formula_counts_the_networks_parameters():
    """With batch 0 the estimate is the parameters' copies alone: the model's exact count."""
    from iterconv.models.resnet import ModelConfig, ResNet, count_parameters

    for width, stages, blocks, source, (channels, side, classes) in [
        (16, 3, 16, "cifar10", (3, 32, 10)),
        (8, 1, 4, "mnist", (1, 28, 10)),
        (4, 4, 2, "cifar100", (3, 32, 100)),
    ]:
        shape = ModelConfig(
            in_channels=channels,
            num_classes=classes,
            image_size=side,
            width=width,
            stages=stages,
            blocks=blocks,
        )
        parameters = training_memory_bytes(width, stages, blocks, 0, source) // (4 * 4)
        assert parameters == count_parameters(ResNet(shape))
    small = training_memory_bytes(16, 3, 16, 128, "cifar10")
    assert small < training_memory_bytes(32, 3, 16, 128, "cifar10")
    assert small < training_memory_bytes(16, 3, 16, 256, "cifar10")


def test_the_seed_bound_is_what_the_per_epoch_generators_accept():
    """Run seeds stop where torch would refuse a per-epoch seed (iterconv.train.loop)."""
    from iterconv.train.config import seed_limit
    from iterconv.train.loop import epoch_generator

    epochs = 400
    epoch_generator(seed_limit(epochs) - 1, epochs - 1)
    with pytest.raises((ValueError, RuntimeError)):
        epoch_generator(seed_limit(epochs), epochs - 1)


# --- 10: the YAML files ---------------------------------------------------------------------

DUPLICATE = "datasets:\n  a: {source: cifar10}\n  b: {source: mnist}\n  a: {source: mnist}\n"


@pytest.mark.parametrize(
    "params, preset, expected",
    [
        (DUPLICATE, "preset: demo\n", "params.yaml:4:3: duplicate key 'a' (first at line 2)"),
        (
            "recipes: {x: {lr: 1, lr: 2}}\n",
            "preset: demo\n",
            "params.yaml:1:22: duplicate key 'lr'",
        ),
        ("a: 1\n", "preset: demo\npreset: paper\n", "preset.yaml:2:1: duplicate key 'preset'"),
        ("a: 1\nb:\n\tc: 2\n", "preset: demo\n", "params.yaml:3:1: not valid YAML"),
        ("a: [1, 2\nb: 3\n", "preset: demo\n", "params.yaml:2:2: not valid YAML"),
        ("a: 1\n  b: 2\n", "preset: demo\n", "params.yaml:2:4: not valid YAML"),
        ("", "preset: demo\n", "params.yaml is empty"),
        ("- a\n- b\n", "preset: demo\n", "params.yaml must be a mapping"),
        ("a: 1\n", "demo\n", "preset.yaml must be a mapping"),
    ],
    ids=[
        "duplicate",
        "duplicate flow",
        "duplicate preset",
        "tab",
        "unclosed list",
        "bad indent",
        "empty",
        "list",
        "preset not a mapping",
    ],
)
def test_yaml_errors_name_the_file_line_and_column(tmp_path, params, preset, expected):
    (tmp_path / "params.yaml").write_text(params)
    (tmp_path / "preset.yaml").write_text(preset)
    with pytest.raises(ParamsError) as err:
        read_params(tmp_path / "params.yaml")
    assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)
    if "tab" in str(err.value):
        assert "tabs" in str(err.value)


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    (tmp_path / "params.yaml").write_text("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  k: 3\n")
    assert read_params(tmp_path / "params.yaml")["b"] == {"k": 3, "j": 2}


def test_the_file_check_reads_and_checks_the_schema():
    from test_pipeline import ROOT

    assert check_params_file(ROOT / "params.yaml")["preset"] in PARAMS["presets"]


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda text: text.replace(
                "  cifar10_2048:", "  cifar100: {source: cifar100}\n  cifar10_2048:"
            ),
            r"params.yaml:\d+:3: duplicate key 'cifar100' \(first at line \d+\)",
        ),
        (
            lambda text: text.replace("  demo:         {epochs: 5", "\tdemo: {epochs: 5"),
            r"params.yaml:\d+:1: not valid YAML: found character '\\t'",
        ),
        (
            lambda text: text.replace("epochs: 6, lr: 0.01}", "epochs: 6, lr: 0}"),
            r"presets\.demo\.families\.van\.lr: 0 is not allowed; must be a number > 0",
        ),
    ],
    ids=["duplicate key", "tab", "family setting"],
)
def test_snakemake_stops_on_yaml_errors_before_any_job(tmp_path, edit, expected):
    import re

    work = workflow_copy(tmp_path)
    params = work / "params.yaml"
    text = params.read_text()
    assert edit(text) != text
    params.write_text(edit(text))
    before = checksums(work)
    result = snakemake(work, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(expected, output), output[-2000:]
    assert not (work / "results").exists()
    after = {k: v for k, v in checksums(work).items() if not k.startswith(".snakemake/")}
    assert after == before
