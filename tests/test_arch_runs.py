"""torchvision architectures as run variants (``tv_resnet``, ``tv_vit``): the configuration
refuses the project's block options, the networks are torchvision's, a run trains and loads
back to the bit, and the per-run analysis gives the adapter's indices."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from params_helpers import with_preset
from test_adapters import bitwise_equal
from test_faults import write_tiny_dataset
from test_train import CPU, quiet
from torchvision.models import VisionTransformer, resnet18

from iterconv.analysis.adapters import torchvision_resnet_adapter, vit_adapter
from iterconv.analysis.indices import compute_indices, read_indices
from iterconv.cli import main
from iterconv.data.prepared import load_prepared, normalize
from iterconv.models.torchvision_nets import (
    SmallImageResNet,
    SmallImageViT,
    TorchvisionConfig,
)
from iterconv.pipeline import ParamsError
from iterconv.pipeline.grid import expand_runs
from iterconv.pipeline.validate import validate_params
from iterconv.train.checkpoint import load_run_model, read_checkpoint
from iterconv.train.config import ConfigError, RunConfig
from iterconv.train.loop import evaluate, train_run

SIZES = {
    "tv_resnet": dict(width=4, stages=2, blocks=3),
    "tv_vit": dict(width=8, stages=1, blocks=3),
}


def arch_config(variant: str, **kw) -> RunConfig:
    base = dict(dataset="tiny", variant=variant, epochs=1, lr=0.01, milestones=(), batch_size=32)
    return RunConfig(**{**base, **SIZES[variant], **kw})


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "variant,setting,key,allowed",
    [
        ("tv_resnet", dict(coupling=0.5, init="recurrent"), "coupling", "must be 0 for variant"),
        ("tv_vit", dict(init="recurrent"), "init", "'nonrecurrent' for variant 'tv_vit'"),
        ("tv_resnet", dict(couple_from=1), "couple_from", "must be 0"),
        ("tv_resnet", dict(kernel="triangular"), "kernel", "'uniform'"),
        ("tv_vit", dict(bn_gamma=0.1), "bn_gamma", "must be 1"),
        ("tv_resnet", dict(stages=5), "stages", "[1, 4]"),
        ("tv_resnet", dict(stages=0), "stages", ">= 1"),  # the general check still applies
        ("tv_resnet", dict(stages=3, blocks=1), "blocks", "downsamples"),
        ("tv_vit", dict(stages=3), "stages", "its encoder is one stage"),
        ("tv_vit", dict(width=10), "width", "multiple of 4"),
    ],
)
def test_configuration_refuses_what_does_not_apply(variant, setting, key, allowed):
    with pytest.raises(ConfigError) as err:
        arch_config(variant, **setting)
    assert err.value.key == key and allowed in err.value.problem


def test_configuration_accepts_the_architectures():
    resnet = arch_config("tv_resnet", stages=1, blocks=1)  # one stage: no downsampling block
    assert resnet.model_config(1, 4, 8) == TorchvisionConfig("tv_resnet", 1, 4, 8, 4, 1, 1)
    vit = arch_config("tv_vit")
    assert RunConfig.from_dict(vit.to_dict()) == vit


def demo_variants(*values) -> dict:
    params = with_preset("demo")
    sweep = next(s for s in params["presets"]["demo"]["sweeps"] if s["name"] == "demo_variants")
    sweep["grid"] = {"variant": list(values)}
    return params


def test_params_name_the_refused_setting_before_any_job():
    params = demo_variants("plain", {"variant": "tv_resnet", "coupling": 0.5, "init": "recurrent"})
    with pytest.raises(ParamsError, match=r"demo_variants\)\.grid\.variant\[1\]\.coupling: 0\.5"):
        validate_params(params)
    unknown = r"grid\.variant\[0\]: 'vgg' is not allowed; must be one of .*tv_resnet, tv_vit$"
    with pytest.raises(ParamsError, match=unknown):
        validate_params(demo_variants("vgg"))


def test_architecture_enters_the_run_id_and_address():
    params = demo_variants("standard", "tv_resnet", {"variant": "tv_vit", "stages": 1, "width": 32})
    validate_params(params)
    runs = expand_runs(params)
    ids = ["demo_digits-standard-3x4-w8-nonrec-c0-s0", "demo_digits-tv_resnet-3x4-w8-nonrec-c0-s0"]
    ids.append("demo_digits-tv_vit-1x4-w32-nonrec-c0-s0")
    assert [runs[i].config.variant for i in ids] == ["standard", "tv_resnet", "tv_vit"]
    assert len({runs[i].address.rsplit("-", 1)[1] for i in ids}) == 3


# ---------------------------------------------------------------- the networks


def test_tv_resnet_is_resnet18_with_a_small_image_stem():
    cfg = TorchvisionConfig("tv_resnet", in_channels=3, num_classes=10, width=64, stages=4)
    with torch.device("meta"):  # shapes only
        ours, theirs = SmallImageResNet(cfg).state_dict(), resnet18(num_classes=10).state_dict()
    assert ours.keys() == theirs.keys()
    differ = [k for k in ours if ours[k].shape != theirs[k].shape]
    assert differ == ["conv1.weight"] and ours["conv1.weight"].shape == (64, 3, 3, 3)
    small = SmallImageResNet(TorchvisionConfig("tv_resnet", width=4, stages=4)).eval()
    x = torch.randn(2, 3, 32, 32)
    assert small.layer1(small.relu(small.bn1(small.conv1(x)))).shape == (2, 4, 32, 32)
    assert small(x).shape == (2, 10)


def test_tv_resnet_of_fewer_stages_has_empty_layers_and_an_adapter():
    model = SmallImageResNet(TorchvisionConfig("tv_resnet", 1, 4, 8, width=4, stages=2, blocks=3))
    assert [len(getattr(model, f"layer{s}")) for s in (1, 2, 3, 4)] == [3, 3, 0, 0]
    adapter = torchvision_resnet_adapter(model)
    assert [len(b) for b in adapter.stages] == [3, 2]
    assert model.fc.in_features == 8 and model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_tv_vit_is_torchvisions_with_the_datasets_channels():
    cfg = TorchvisionConfig("tv_vit", in_channels=1, num_classes=4, image_size=8, width=8, stages=1)
    ours = SmallImageViT(cfg).state_dict()
    theirs = VisionTransformer(8, 4, 2, 4, 8, 32, num_classes=4).state_dict()
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k].shape != theirs[k].shape] == ["conv_proj.weight"]
    assert ours["conv_proj.weight"].shape == (8, 1, 4, 4)
    with pytest.raises(ValueError, match="divisible by 4"):
        TorchvisionConfig("tv_vit", image_size=30, width=8, stages=1)


# ---------------------------------------------------------------- runs and their indices


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.mark.parametrize("variant", ["tv_resnet", "tv_vit"])
def test_run_trains_and_loads_back_to_the_bit(variant, tiny, tmp_path):
    data = load_prepared(tiny)
    cfg = arch_config(variant)
    metrics = train_run(cfg, data, tmp_path / "a", CPU, log=quiet)
    again = train_run(cfg, data, tmp_path / "b", CPU, log=quiet)
    assert again["best_val_error"] == metrics["best_val_error"]

    model, config = load_run_model(tmp_path / "a" / "best.pt")
    assert type(model) is {"tv_resnet": SmallImageResNet, "tv_vit": SmallImageViT}[variant]
    assert config == cfg.to_dict() and model.cfg == cfg.model_config(1, 4, 8)
    stored = read_checkpoint(tmp_path / "a" / "best.pt")["model"]
    other = read_checkpoint(tmp_path / "b" / "best.pt")["model"]
    loaded = model.state_dict()
    assert loaded.keys() == stored.keys()
    for k in stored:
        assert torch.equal(loaded[k], stored[k]) and torch.equal(other[k], stored[k]), k
    # the loaded network computes the validation error that training recorded
    _, error = evaluate(model, data)
    assert error == metrics["best_val_error"] and metrics["parameters"] == sum(
        p.numel() for p in model.parameters()
    )


@pytest.mark.parametrize("variant", ["tv_resnet", "tv_vit"])
def test_per_run_indices_are_the_adapters(variant, tiny, tmp_path):
    data = load_prepared(tiny)
    cfg = arch_config(variant, epochs=2, milestones=(1,))
    run = tmp_path / "run"
    train_run(cfg, data, run, CPU, log=quiet)
    out = tmp_path / "indices.json"
    argv = ["indices", "--run", str(run), "--data", str(tiny), "--out", str(out)]
    assert main([*argv, "--extra", "3", "--batch-size", "20", "--device", "cpu"]) == 0
    from_checkpoint = read_indices(out)

    # the same weights in a network built directly, through the adapter of its kind
    direct = {"tv_resnet": SmallImageResNet, "tv_vit": SmallImageViT}[variant]
    model = direct(cfg.model_config(1, 4, 8))
    model.load_state_dict(read_checkpoint(run / "best.pt")["model"])
    adapter = {"tv_resnet": torchvision_resnet_adapter, "tv_vit": vit_adapter}[variant](model)
    prepare = lambda x: normalize(x, data.mean, data.std)  # noqa: E731
    direct_result = compute_indices(
        adapter, data.val_x, data.val_y, extra=3, batch_size=20, prepare=prepare
    )
    assert [st["blocks"] for st in from_checkpoint["stages"]] == {
        "tv_resnet": [3, 2],
        "tv_vit": [3],
    }[variant]
    for key in ("network", "stages", "block_evaluations", "epc", "final_error", "chance_error"):
        bitwise_equal(from_checkpoint[key], direct_result[key], key)
    counts = from_checkpoint["block_evaluations"]
    assert counts["total"] < counts["naive_total"]


# ---------------------------------------------------------------- beside the paper's networks


def test_fig_variants_puts_the_architectures_after_the_papers_networks(monkeypatch):
    import pandas as pd

    from iterconv.figures import variants

    # the label map with a torchvision variant first: the plot orders them last anyway
    labels = {"tv_resnet": variants.VARIANT_NAMES["tv_resnet"], **variants.VARIANT_NAMES}
    monkeypatch.setattr(variants, "VARIANT_NAMES", labels)
    runs = pd.DataFrame(
        [
            {"variant": v, "width": 8, "seed": s, "CI": 0.1 * i + 0.01 * s}
            for i, v in enumerate(("tv_vit", "plain", "tv_resnet", "standard"))
            for s in (0, 1)
        ]
    )
    ax = variants.plot_by_variant(runs, "CI")
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["ResNet", "plain", "tv ResNet", "tv ViT"]
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and list(dotted[0].get_xdata()) == [1.5, 1.5]
    assert ax.get_xlabel() == "Block type or architecture"
    plain = variants.plot_by_variant(runs[~runs["variant"].str.startswith("tv_")], "CI")
    assert plain.get_xlabel() == "Block type"
    assert not [line for line in plain.get_lines() if line.get_linestyle() == ":"]


def test_the_architectures_enter_fig_variants():
    from fake_tables import fake_tables

    from iterconv.figures.registry import FIGURES
    from iterconv.results import main_dataset, variant_runs

    runs = fake_tables(preset="demo", seeds=1)["runs"]
    ds = main_dataset(runs)
    base = runs[(runs["dataset"] == ds) & (runs["variant"] == "standard")].iloc[[0]]
    base = base.assign(coupling=0.0, init="nonrecurrent")
    tv = base.assign(variant="tv_resnet", run_id="tv")
    vit = base.assign(variant="tv_vit", run_id="vit", stages=1, blocks=4, width=32)
    only_tv = pd.concat([base, tv, vit], ignore_index=True)
    assert set(variant_runs(only_tv, ds)["variant"]) == {"standard", "tv_resnet", "tv_vit"}
    assert FIGURES["fig_variants"].available(only_tv)
    assert not FIGURES["fig_variants"].available(base)
