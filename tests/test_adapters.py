"""The adapter protocol: the engine on any residual network vs naive references, the project's
ResNet unchanged to the bit, identity stages, and ``iterconv indices-model``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_analysis_indices import make_model
from torch import nn
from torchvision.models import VisionTransformer, resnet18, resnet34
from torchvision.models.convnext import CNBlock, CNBlockConfig, ConvNeXt

from iterconv.analysis import adapters
from iterconv.analysis.adapters import (
    BlockCounter,
    ResidualAdapter,
    StagePerturbations,
    adapter_for,
    iterconv_resnet_adapter,
    perturb_batch,
)
from iterconv.analysis.indices import compute_indices, read_indices
from iterconv.cli import main
from iterconv.models.torchvision_nets import SmallImageResNet, SmallImageViT, TorchvisionConfig
from iterconv.train.metrics import loss_fn, mistakes, predictions

# ---------------------------------------------------------------- the engine before adapters


def legacy_perturb_batch(model, images, extra, max_rows, counter):
    """The engine as it ran on the project's ResNet before the adapter protocol (a frozen copy:
    same operations in the same order, so its results are the reference to the bit)."""
    z = model.stem(images)
    results = []
    for s, transition in enumerate(model.transitions):
        x = transition(z)
        if s > 0:
            counter.downsampling += images.shape[0]
        blocks, b = model.stages[s].blocks, x.shape[0]
        n_blocks = len(blocks)
        later = range(s + 1, len(model.stages))
        later_blocks = sum(len(model.stages[t].blocks) for t in later)
        pending, rows, out, dist = [], 0, {}, {}

        def flush(pending, rows, s=s, later_blocks=later_blocks, out=out):
            if pending:
                keys, zs = zip(*pending)
                logits = model.finish(torch.cat(zs) if len(zs) > 1 else zs[0], s)
                counter.later_stages += rows * later_blocks
                counter.downsampling += rows * (len(model.stages) - 1 - s)
                out.update(zip(keys, logits.split([z.shape[0] for z in zs])))
            return [], 0

        def add(key, zk, pending, rows):
            pending.append((key, zk))
            rows += zk.shape[0]
            return flush(pending, rows) if rows >= max_rows else (pending, rows)

        prefix = [x]
        for block in blocks:
            prefix.append(block(prefix[-1], x))
        counter.perturbed_stage += b * n_blocks
        z_final = prefix[-1]
        for k in range(1, n_blocks):
            pending, rows = add(("readout", k), prefix[k], pending, rows)
            dist["readout", k] = (prefix[k] - z_final).flatten(1).norm(dim=1)
        for k in range(1, n_blocks + 1):
            if k == n_blocks and n_blocks > 1:
                continue
            zk = prefix[k - 1]
            for i in range(k, n_blocks):
                zk = blocks[i](zk, x)
            counter.perturbed_stage += b * (n_blocks - k)
            pending, rows = add(("dropout", k), zk, pending, rows)
            dist["dropout", k] = (zk - z_final).flatten(1).norm(dim=1)
        zk = z_final
        for j in range(1, extra + 1):
            zk = blocks[-1](zk, x)
            pending, rows = add(("extra", j), zk, pending, rows)
            dist["extra", j] = (zk - z_final).flatten(1).norm(dim=1)
        counter.perturbed_stage += b * extra
        flush(pending, rows)
        if n_blocks > 1:
            out["dropout", n_blocks] = out["readout", n_blocks - 1]
            dist["dropout", n_blocks] = dist["readout", n_blocks - 1]
        res = StagePerturbations()
        for kind, n in {"readout": n_blocks - 1, "dropout": n_blocks, "extra": extra}.items():
            keys = [(kind, i) for i in range(1, n + 1)]
            if keys:
                res.logits[kind] = torch.stack([out[key] for key in keys])
                res.distance[kind] = torch.stack([dist[key] for key in keys])
            else:
                res.logits[kind] = x.new_zeros((0, b, model.head.fc.out_features))
                res.distance[kind] = x.new_zeros((0, b))
        results.append(res)
        z = z_final
    return model.head(z), results


def bitwise_equal(a, b, path="result"):
    """Same structure, same values to the bit (NaN equals NaN)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            bitwise_equal(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            bitwise_equal(u, v, f"{path}[{i}]")
    elif isinstance(a, float):
        assert type(b) is float and (a == b or (math.isnan(a) and math.isnan(b))), (path, a, b)
    else:
        assert type(a) is type(b) and a == b, (path, a, b)


@pytest.mark.parametrize(
    "variant,stages,blocks,multilabel",
    [
        ("standard", 3, 3, False),
        ("pcr", 2, 3, True),
        ("icr", 2, 1, False),
        ("van", 2, 2, False),
        ("implicit", 2, 2, False),
    ],
)
def test_project_resnet_bitwise_as_before(variant, stages, blocks, multilabel, monkeypatch):
    model = make_model(variant, stages, blocks)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(30, 1, 8, 8, generator=g, dtype=torch.float64)
    if multilabel:
        labels = (torch.rand(30, 10, generator=g) < 0.3).to(torch.uint8)
        labels[:, 0] = 1
    else:
        labels = torch.randint(0, 10, (30,), generator=g)
    kwargs = dict(multilabel=multilabel, extra=3, batch_size=12, max_batch=20)
    new = compute_indices(model, images, labels, **kwargs)
    via_adapter = compute_indices(iterconv_resnet_adapter(model), images, labels, **kwargs)

    calls = []

    def legacy(adapter, xb, extra, max_rows, counter):
        calls.append(xb.shape[0])
        return legacy_perturb_batch(adapter.module, xb, extra, max_rows, counter)

    monkeypatch.setattr(adapters, "perturb_batch", legacy)
    old = compute_indices(model, images, labels, **kwargs)
    assert calls == [12, 12, 6]
    for res in (new, via_adapter, old):
        res.pop("seconds")
    assert len({v for v in old["stages"][0]["extra_distance"]}) > 1  # informative curves
    bitwise_equal(new, old)
    bitwise_equal(via_adapter, old)


# ---------------------------------------------------------------- naive references


def run_layers(layers, x):
    """Apply a plain list of layers; a ``None`` entry marks the perturbed stage's output."""
    z_s = None
    for layer in layers:
        if layer is None:
            z_s = x
        else:
            x = layer(x)
    return x, z_s


def tv_resnet_layers(model, s, order):
    """torchvision ResNet as a plain list, stage s (the residual blocks of layer s + 1) run in
    ``order``."""
    layers = [model.conv1, model.bn1, model.relu, model.maxpool]
    for t, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        blocks = list(layer)  # empty beyond the stages of a SmallImageResNet
        if blocks and blocks[0].downsample is not None:
            layers.append(blocks[0])
            blocks = blocks[1:]
        layers += [blocks[i] for i in order] if t == s else blocks
        if t == s:
            layers.append(None)
    return [*layers, model.avgpool, nn.Flatten(1), model.fc]


def vit_layers(model, s, order):
    enc = model.encoder

    def tokens(x):
        x = model._process_input(x)
        return torch.cat([model.class_token.expand(x.shape[0], -1, -1), x], dim=1)

    blocks = list(enc.layers)
    return [
        tokens,
        lambda x: enc.dropout(x + enc.pos_embedding),
        *[blocks[i] for i in order],
        None,
        enc.ln,
        lambda z: z[:, 0],
        model.heads,
    ]


def convnext_layers(model, s, order):
    layers, stage = [model.features[0]], -1
    for part in list(model.features)[1:]:
        if all(isinstance(c, CNBlock) for c in part.children()):
            stage += 1
            blocks = list(part)
            layers += [blocks[i] for i in order] if stage == s else blocks
            if stage == s:
                layers.append(None)
        else:
            layers.append(part)
    return [*layers, model.avgpool, model.classifier]


def naive_check(model, adapter, build, images, labels, extra):
    """Every curve point of the engine against the network rebuilt per perturbation and run
    whole; returns (naive block applications per image, the engine's)."""
    n_blocks = [len(b) for b in adapter.stages]
    with torch.inference_mode():
        model.eval()
        base, _ = run_layers(build(model, 0, range(n_blocks[0])), images)
        assert torch.allclose(base, model(images), rtol=0, atol=1e-12)
        counter = BlockCounter()
        logits, stages = perturb_batch(adapter, images, extra, 7, counter)
        assert torch.equal(logits, base) or torch.allclose(logits, base, rtol=1e-12, atol=1e-12)
        res = compute_indices(adapter, images, labels, extra=extra, batch_size=5, max_batch=9)
        own = predictions(base, False)
        naive = sum(n_blocks)
        for s, b in enumerate(n_blocks):
            _, z_final = run_layers(build(model, s, range(b)), images)
            orders = {
                "readout": [list(range(k)) for k in range(1, b + 1)],
                "dropout": [[i for i in range(b) if i != k] for k in range(b)],
                "extra": [[*range(b), *([b - 1] * j)] for j in range(1, extra + 1)],
            }
            for kind, order_list in orders.items():
                for p, order in enumerate(order_list):
                    want, z = run_layers(build(model, s, order), images)
                    naive += sum(n_blocks) - b + len(order)
                    if kind == "readout" and p == b - 1:
                        got, dist = logits, torch.zeros(images.shape[0], dtype=want.dtype)
                    else:
                        got, dist = stages[s].logits[kind][p], stages[s].distance[kind][p]
                    assert torch.allclose(got, want, rtol=1e-9, atol=1e-10), (s, kind, p)
                    d = (z - z_final).flatten(1).norm(dim=1)
                    assert torch.allclose(dist, d, rtol=1e-9, atol=1e-10), (s, kind, p)
                    st = res["stages"][s]
                    err = mistakes(want, labels, False).double().mean().item()
                    alt = mistakes(want, own, False).double().mean().item()
                    assert st[f"{kind}_error"][p] == pytest.approx(err, abs=1e-12)
                    assert st[f"{kind}_error_alt"][p] == pytest.approx(alt, abs=1e-12)
                    loss = loss_fn(want, labels, False).item()
                    assert st[f"{kind}_loss"][p] == pytest.approx(loss, rel=1e-9, abs=1e-12)
                    assert st[f"{kind}_distance"][p] == pytest.approx(
                        d.mean().item(), rel=1e-9, abs=1e-12
                    )
        assert len({round(v, 9) for v in res["stages"][0]["extra_distance"]}) > 1
    counts = res["block_evaluations"]
    assert counts["naive_total"] == naive
    assert counts["total"] < naive
    assert counts["total"] == counts["perturbed_stage"] + counts["later_stages"]
    return naive, counts["total"]


def randomise_norms(model, images):
    """Non-trivial BatchNorm statistics and affine parameters (eval mode is otherwise close to
    the identity)."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(images * 2 + 0.3)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def small_resnet18():
    torch.manual_seed(0)
    model = resnet18(num_classes=10).double()
    return randomise_norms(model, torch.randn(8, 3, 32, 32, dtype=torch.float64))


def small_vit(num_layers=4):
    torch.manual_seed(0)
    model = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=10,
    ).double()
    with torch.no_grad():
        nn.init.normal_(model.heads.head.weight, std=0.5)  # zero-initialised in torchvision
    return randomise_norms(model, torch.randn(8, 3, 32, 32, dtype=torch.float64))


def small_convnext():
    torch.manual_seed(0)
    settings = [CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 3)]
    model = ConvNeXt(settings, num_classes=10).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, CNBlock):
                m.layer_scale.uniform_(0.2, 0.6)  # 1e-6 at initialisation
    return randomise_norms(model, torch.randn(8, 3, 32, 32, dtype=torch.float64))


def data(n=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 32, 32, generator=g, dtype=torch.float64)
    return images, torch.randint(0, 10, (n,), generator=g)


def test_torchvision_resnet18_matches_naive():
    model = small_resnet18()
    adapter = adapter_for(model)
    # layer1 keeps the shape (2 residual blocks); layers 2-4 start with a downsampling block.
    assert [len(b) for b in adapter.stages] == [2, 1, 1, 1]
    assert [t is None for t in adapter.transitions] == [True, False, False, False]
    images, labels = data()
    naive, engine = naive_check(model, adapter, tv_resnet_layers, images, labels, extra=3)
    assert (naive, engine) == (133, 45)  # docs/analysis.md, section 1


def test_vit_matches_naive():
    model = small_vit()
    adapter = adapter_for(model)
    assert [len(b) for b in adapter.stages] == [4] and adapter.transitions == [None]
    images, labels = data()
    naive, engine = naive_check(model, adapter, vit_layers, images, labels, extra=3)
    assert (naive, engine) == (44, 13)


def test_pipeline_architectures_match_naive():
    """The networks a run may train instead of the project's ResNet (run variants tv_resnet and
    tv_vit): three of torchvision's four ResNet layers; a ViT on grey images."""
    torch.manual_seed(0)
    cfg = TorchvisionConfig("tv_resnet", in_channels=3, width=4, stages=3, blocks=3)
    grey = torch.randn(8, 1, 32, 32, dtype=torch.float64)
    resnet = randomise_norms(SmallImageResNet(cfg).double(), grey.expand(-1, 3, -1, -1))
    adapter = adapter_for(resnet)
    assert [len(b) for b in adapter.stages] == [3, 2, 2]
    assert [t is None for t in adapter.transitions] == [True, False, False]
    images, labels = data()
    naive_check(resnet, adapter, tv_resnet_layers, images, labels, extra=2)

    vit = SmallImageViT(TorchvisionConfig("tv_vit", in_channels=1, width=8, stages=1, blocks=3))
    with torch.no_grad():
        nn.init.normal_(vit.heads.head.weight, std=0.5)  # zero-initialised in torchvision
    vit = randomise_norms(vit.double(), grey)
    adapter = adapter_for(vit)
    assert [len(b) for b in adapter.stages] == [3]
    naive_check(vit, adapter, vit_layers, images[:, :1], labels, extra=2)


def test_convnext_matches_naive():
    model = small_convnext()
    adapter = adapter_for(model)
    assert [len(b) for b in adapter.stages] == [2, 3]
    images, labels = data()
    naive_check(model, adapter, convnext_layers, images, labels, extra=2)


class Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.f(z)


class Small(nn.Module):
    """A user's own network: the worked example of docs/analysis.md, section 4."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 24))
        self.stage1 = nn.ModuleList(Residual(24) for _ in range(3))
        self.down = nn.Linear(24, 12)
        self.stage2 = nn.ModuleList(Residual(12) for _ in range(2))
        self.out = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.embed(x)
        for block in self.stage1:
            z = block(z)
        z = self.down(z)
        for block in self.stage2:
            z = block(z)
        return self.out(z)


def small_adapter(model):
    return ResidualAdapter(
        stem=model.embed,
        stages=[list(model.stage1), list(model.stage2)],
        transitions=[None, model.down],
        head=model.out,
        num_classes=10,
        module=model,
    )


def small_layers(model, s, order):
    stages = [list(model.stage1), list(model.stage2)]
    layers = [model.embed]
    for t, blocks in enumerate(stages):
        if t == 1:
            layers.append(model.down)
        layers += [blocks[i] for i in order] if t == s else blocks
        if t == s:
            layers.append(None)
    return [*layers, model.out]


def test_generic_adapter_matches_naive():
    torch.manual_seed(0)
    model = Small().double().eval()
    adapter = small_adapter(model)
    images, labels = data()
    naive_check(model, adapter, small_layers, images, labels, extra=2)
    res = compute_indices(adapter, images, labels, extra=2)
    epc = res["epc"]
    assert epc["raw"] == sum(p.numel() for p in model.parameters())
    assert epc["recurrent"] == epc["uncoupled"] + sum(
        sum(p.numel() for p in blocks[0].parameters()) for blocks in (model.stage1, model.stage2)
    )
    assert epc["recurrent"] < epc["epc"]


def test_generic_adapter_rejects_an_empty_stage():
    model = Small()
    with pytest.raises(ValueError, match="at least one residual block"):
        ResidualAdapter(model.embed, [list(model.stage1), []], model.out, num_classes=10)


# ---------------------------------------------------------------- identity stages


IDENTITY_CASES = ("project resnet", "project pcr", "resnet18", "vit", "convnext", "generic")


def identity_case(name):
    """(model, what compute_indices gets) with every residual block of every stage returning
    its input."""
    if name.startswith("project"):
        variant, stages = ("standard", 2) if name == "project resnet" else ("pcr", 1)
        model = make_model(variant, stages, 3)
        with torch.no_grad():
            for stage in model.stages:
                for block in stage.blocks:
                    block.f.conv2.weight.zero_()  # z + 0 (standard), x + 0 (PCR)
        return model, model
    if name == "resnet18":
        model = small_resnet18()
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            for i in range(len(layer)):
                if layer[i].downsample is None:
                    layer[i] = nn.Identity()
        return model, model
    if name == "vit":
        model = small_vit()
        model.encoder.layers = nn.Sequential(*(nn.Identity() for _ in range(4)))
        return model, model
    if name == "convnext":
        model = small_convnext()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, CNBlock):
                    m.layer_scale.zero_()  # 0 * branch + input
        return model, model
    model = Small().double()
    model.stage1 = nn.ModuleList(nn.Identity() for _ in range(3))
    model.stage2 = nn.ModuleList(nn.Identity() for _ in range(2))
    return model, small_adapter(model)


@pytest.mark.parametrize("name", IDENTITY_CASES)
def test_identity_stages_give_ci_ri_one_di_zero(name):
    model, target = identity_case(name)
    in_channels, size = (1, 8) if name.startswith("project") else (3, 32)
    g = torch.Generator().manual_seed(2)
    images = torch.randn(12, in_channels, size, size, generator=g, dtype=torch.float64)
    with torch.inference_mode():
        labels = model.eval()(images).argmax(1)  # the network's own predictions: e_f = 0
    res = compute_indices(target, images, labels, extra=3)
    assert res["final_error"] == 0.0 and res["chance_error"] == pytest.approx(0.9)
    for st in [*res["stages"], res["network"]]:
        for alt in ("", "_alt"):
            assert st[f"CI{alt}"] == 1.0 and st[f"RI{alt}"] == 1.0 and st[f"DI{alt}"] == 0.0
    assert all(v == 0.0 for st in res["stages"] for v in st["extra_distance"])
    assert not res["notes"]


# ---------------------------------------------------------------- iterconv indices-model


def write_folder(root, per_class=3, classes=("cat", "dog"), size=32):
    from PIL import Image

    g = torch.Generator().manual_seed(3)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    model = randomise_norms(resnet18(num_classes=2), torch.randn(8, 3, 32, 32))
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(model.state_dict(), path)
    return path


def command(*args):
    return main(["indices-model", *map(str, args)])


def test_indices_model_on_an_image_folder(tmp_path, weights_file):
    folder = write_folder(tmp_path / "images")
    out = tmp_path / "out" / "indices.json"
    rc = command(
        "--arch", "torchvision:resnet18", "--weights", weights_file, "--data",
        f"imagefolder:{folder}", "--out", out, "--image-size", 32, "--extra", 2,
        "--device", "cpu",
    )  # fmt: skip
    assert rc == 0
    res = read_indices(out)
    assert res["n_images"] == 6 and res["chance_error"] == 0.5 and res["extra_evaluations"] == 2
    assert [st["blocks"] for st in res["stages"]] == [2, 1, 1, 1]
    assert res["model"]["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert res["model"]["num_classes"] == 2 and "resnet18" in res["run"]
    assert res["block_evaluations"]["total"] < res["block_evaluations"]["naive_total"]
    assert len(res["epc"]["stages"]) == 4

    # The same numbers as the engine on the same images, normalised by hand.
    import numpy as np
    from PIL import Image

    files = sorted(folder.glob("*/*.png"))
    x = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    model = resnet18(num_classes=2)
    model.load_state_dict(torch.load(weights_file))
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    want = compute_indices(model, (x.float() / 255 - mean) / std, labels, extra=2)
    for st, ref in zip(res["stages"], want["stages"]):
        for key in ("readout_loss", "dropout_loss", "extra_loss", "extra_distance"):
            assert st[key] == pytest.approx(ref[key], rel=1e-5), key
    # No temporary file left beside the output.
    assert [p.name for p in out.parent.iterdir()] == ["indices.json"]
    json.loads(out.read_text())  # strict JSON

    rc = command(
        "--arch", "torchvision:resnet18", "--weights", weights_file, "--data",
        f"imagefolder:{folder}", "--out", out, "--image-size", 32, "--extra", 1,
        "--max-images", 4, "--device", "cpu",
    )  # fmt: skip
    assert rc == 0 and read_indices(out)["n_images"] == 4


def bad_cases(tmp, weights):
    folder = write_folder(tmp / "images")
    empty = tmp / "empty"
    empty.mkdir()
    no_images = tmp / "no_images"
    (no_images / "cat").mkdir(parents=True)
    (no_images / "cat" / "notes.txt").write_text("not an image")
    text = tmp / "weights.txt"
    text.write_text("not a checkpoint")
    torch.manual_seed(0)
    wrong = tmp / "resnet34.pt"
    torch.save(resnet34(num_classes=2).state_dict(), wrong)
    ten = tmp / "ten.pt"
    torch.save(resnet18(num_classes=10).state_dict(), ten)
    good = f"imagefolder:{folder}"
    return {
        "unknown architecture": ("torchvision:nosuchnet", weights, good, "unknown architecture"),
        "no prefix": ("resnet18", weights, good, "unknown architecture"),
        "not residual": ("torchvision:alexnet", weights, good, "not a residual network"),
        "weights of another net": ("torchvision:resnet18", wrong, good, "do not fit"),
        "not a state_dict": ("torchvision:resnet18", text, good, "not a PyTorch state_dict"),
        "missing weights": ("torchvision:resnet18", tmp / "nope.pt", good, "no such file"),
        "unknown weights name": ("torchvision:resnet18", "IMAGENET9K", good, "neither a file"),
        "missing data": ("torchvision:resnet18", weights, f"imagefolder:{tmp}/x", "no such dir"),
        "bad data kind": ("torchvision:resnet18", weights, f"folder:{folder}", "invalid --data"),
        "empty folder": ("torchvision:resnet18", weights, f"imagefolder:{empty}", "no class"),
        "no images": ("torchvision:resnet18", weights, f"imagefolder:{no_images}", "no images"),
        "class count": ("torchvision:resnet18", ten, good, "has 2 classes"),
        "missing prepared": ("torchvision:resnet18", weights, f"prepared:{tmp}/p", "no such dir"),
    }


def test_indices_model_bad_input(tmp_path, weights_file, capsys):
    cases = bad_cases(tmp_path, weights_file)
    for what, (arch, weights, data_spec, words) in cases.items():
        out = tmp_path / f"{what}.json"
        rc = command(
            "--arch", arch, "--weights", weights, "--data", data_spec, "--out", out,
            "--image-size", 32, "--device", "cpu",
        )  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2, what
        assert err.startswith("iterconv indices-model: error: ") and err.count("\n") == 1, err
        assert words in err, (what, err)
        assert not out.exists()
    rc = command(
        "--arch", "torchvision:resnet18", "--weights", weights_file, "--data",
        f"imagefolder:{tmp_path}/images", "--out", tmp_path / "o.json", "--extra", 0,
    )  # fmt: skip
    assert rc == 2 and "--extra must be > 0" in capsys.readouterr().err


def test_indices_model_on_a_grey_prepared_dataset(tmp_path, weights_file):
    from iterconv.data.store import write_prepared

    g = torch.Generator().manual_seed(4)

    def split(n):
        x = torch.randint(0, 256, (n, 1, 32, 32), generator=g, dtype=torch.uint8)
        return {"x": x.numpy(), "y": torch.randint(0, 2, (n,), generator=g).numpy()}

    write_prepared(
        tmp_path / "grey", train=split(4), val=split(5), name="grey", source="mnist",
        num_classes=2, multilabel=False, augment="none", params={},
    )  # fmt: skip
    out = tmp_path / "grey.json"
    rc = command(
        "--arch", "torchvision:resnet18", "--weights", weights_file, "--data",
        f"prepared:{tmp_path / 'grey'}", "--out", out, "--image-size", 32, "--extra", 2,
        "--device", "cpu",
    )  # fmt: skip
    assert rc == 0
    res = read_indices(out)
    assert res["n_images"] == 5 and len(res["stages"]) == 4
    assert res["model"]["data"] == f"prepared:{tmp_path / 'grey'}"
