"""``iterconv indices-model``: the iterative convergence indices of a torchvision residual
network (ResNet family, VisionTransformer, ConvNeXt) on an image folder or a prepared dataset
(docs/analysis.md, section 4).

Preprocessing: torchvision weights bring their own (``weights.transforms()``: resize, centre
crop, ImageNet mean and std); a state_dict file gets a resize of the shorter side and a centre
crop to ``--image-size`` (default: a ViT's own image size, else 224) and the standard ImageNet
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). The resize and crop happen once when
the images are read (kept as uint8); scaling to [0, 1] and normalising run per batch on the
device.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iterconv.cli import UserError

if TYPE_CHECKING:  # torch only where the command runs
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# torchvision model modules with an adapter, and the key of each family's final Linear weight
# (gives the class count of a state_dict).
FAMILIES = {
    "torchvision.models.resnet": "fc.weight",
    "torchvision.models.vision_transformer": "heads.head.weight",
    "torchvision.models.convnext": "classifier.2.weight",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "indices-model",
        help="convergence, recurrence and divergence indices of a torchvision residual network",
        description="Compute the three indices of iterative convergence of a torchvision "
        "network (ResNets and their relatives, Vision Transformers, ConvNeXt) with its own or "
        "torchvision's weights, on a folder of images or a prepared dataset; writes one JSON "
        "file like 'iterconv indices' (docs/analysis.md, section 4).",
    )
    p.add_argument(
        "--arch",
        required=True,
        help="torchvision:NAME (resnet*, wide_resnet*, resnext*, vit_*, convnext_*)",
    )
    p.add_argument(
        "--weights",
        required=True,
        help="a state_dict FILE, or DEFAULT or a weights name of the architecture "
        "(e.g. IMAGENET1K_V1), loaded by torchvision",
    )
    p.add_argument(
        "--data",
        required=True,
        help="imagefolder:DIR (one folder of images per class) or prepared:DIR (validation split)",
    )
    p.add_argument("--out", type=Path, required=True, help="output JSON file")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--max-images", type=int, default=0, help="N images evenly spread (0: all)")
    p.add_argument("--extra", type=int, default=16, help="extra evaluations J (default 16)")
    p.add_argument(
        "--num-classes",
        type=int,
        default=0,
        help="outputs of a state_dict's network (default: read from the file)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=0,
        help="input size for a state_dict (default: a ViT's own, else 224)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument(
        "--max-batch",
        type=int,
        default=512,
        help="rows (images x perturbations) per call of the later stages (default 512)",
    )
    p.set_defaults(handler=run_indices_model)


@dataclass
class Preprocess:
    """Resize (shorter side) and centre crop at reading; scale and normalise per batch."""

    resize: int
    crop: int
    interpolation: str = "bilinear"
    antialias: bool = True
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    source: str = "ImageNet normalisation"

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def _positive(name: str, value: int, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"--{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def parse_arch(spec: str) -> str:
    """The torchvision model name of ``torchvision:NAME``, checked to have an adapter."""
    import torchvision.models as tvm

    kind, _, name = spec.partition(":")
    if kind != "torchvision" or not name:
        raise UserError(
            f"unknown architecture {spec!r}: use torchvision:NAME, e.g. torchvision:resnet50"
        )
    if name not in tvm.list_models(module=tvm):
        raise UserError(
            f"unknown architecture {spec!r}: no torchvision classification model {name!r}"
        )
    if tvm.get_model_builder(name).__module__ not in FAMILIES:
        raise UserError(
            f"architecture {spec!r} is not a residual network with an adapter: use "
            "a ResNet, Wide ResNet, ResNeXt, ViT or ConvNeXt"
        )
    return name


def parse_data(spec: str) -> tuple[str, Path]:
    kind, _, path = spec.partition(":")
    if kind not in ("imagefolder", "prepared") or not path:
        raise UserError(f"invalid --data {spec!r}: use imagefolder:DIR or prepared:DIR")
    if not Path(path).is_dir():
        raise UserError(f"--data {spec}: no such directory {path}")
    return kind, Path(path)


def _state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The parameter dict in a loaded file: a state_dict, or one under 'state_dict'/'model';
    a ``module.`` prefix on every key (DataParallel) is removed."""
    import torch

    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise UserError(f"{path} holds no state_dict (a dict of parameter tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def _fit(model: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Load ``state`` into ``model``, or a one-line error saying what does not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first {missing[0]!r})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
    if shapes:
        k = shapes[0]
        problems.append(
            f"{len(shapes)} of another shape (first {k!r}: {tuple(state[k].shape)} in the file, "
            f"{tuple(own[k].shape)} in the network)"
        )
    if problems:
        raise UserError(f"weights {path} do not fit {arch}: parameters {'; '.join(problems)}")
    model.load_state_dict(state)


def load_model(args: argparse.Namespace, name: str) -> tuple[nn.Module, Preprocess, str]:
    """The network with its weights, its preprocessing and a label for the weights."""
    import torchvision.models as tvm

    path = Path(args.weights)
    if path.is_file():
        return _model_from_file(args, name, path)
    try:
        enum = tvm.get_model_weights(name)
    except (KeyError, ValueError):
        enum = None
    weights = enum.__members__.get(args.weights) if enum is not None else None
    if weights is None:
        if os.sep in args.weights or "." in args.weights:
            raise UserError(f"--weights {args.weights}: no such file")
        names = ", ".join(enum.__members__) if enum is not None else "none"
        raise UserError(
            f"--weights {args.weights!r} is neither a file nor a torchvision weights name of "
            f"{args.arch} ({names})"
        )
    if args.image_size:
        raise UserError(
            "--image-size applies to a state_dict file; torchvision weights bring "
            "their own preprocessing"
        )
    classes = len(weights.meta["categories"])
    if args.num_classes and args.num_classes != classes:
        raise UserError(f"--num-classes {args.num_classes}: weights {weights} have {classes}")
    try:
        model = tvm.get_model(name, weights=weights)
    except (OSError, RuntimeError, ValueError) as err:
        raise UserError(f"cannot load torchvision weights {weights}: {err}") from err
    t = weights.transforms()
    prep = Preprocess(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        interpolation=t.interpolation.value,
        antialias=bool(t.antialias),
        mean=tuple(t.mean),
        std=tuple(t.std),
        source=f"{weights}.transforms()",
    )
    return model, prep, str(weights)


def _model_from_file(
    args: argparse.Namespace, name: str, path: Path
) -> tuple[nn.Module, Preprocess, str]:
    import pickle

    import torch
    import torchvision.models as tvm

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise UserError(f"{path} is not a PyTorch state_dict file ({err})") from err
    state = _state_dict(obj, path)
    family = tvm.get_model_builder(name).__module__
    kwargs: dict[str, Any] = {}
    head = state.get(FAMILIES[family])
    kwargs["num_classes"] = args.num_classes or (int(head.shape[0]) if head is not None else 1000)
    size = args.image_size
    if family == "torchvision.models.vision_transformer" and not size:
        pos, proj = state.get("encoder.pos_embedding"), state.get("conv_proj.weight")
        if pos is not None and proj is not None and pos.dim() == 3 and proj.dim() == 4:
            side = math.isqrt(max(pos.shape[1] - 1, 0))
            if side * side == pos.shape[1] - 1:
                size = side * proj.shape[-1]
    if family == "torchvision.models.vision_transformer" and size:
        kwargs["image_size"] = size
    try:
        model = tvm.get_model(name, weights=None, **kwargs)
    except (ValueError, TypeError) as err:
        raise UserError(f"cannot build {args.arch} with {kwargs}: {err}") from err
    _fit(model, state, path, args.arch)
    size = size or getattr(model, "image_size", 224)
    return model, Preprocess(resize=size, crop=size), str(path)


def input_channels(model: nn.Module) -> int:
    from torch import nn

    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def _spread(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (all of them for n = 0 or n >= total)."""
    if not n or n >= total:
        return list(range(total))
    return [i * total // n for i in range(n)]


def _geometry(prep: Preprocess, image: Any) -> Any:
    """Resize the shorter side and centre crop (a PIL image or a uint8 tensor batch)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    mode = InterpolationMode(prep.interpolation)
    image = TF.resize(image, [prep.resize], interpolation=mode, antialias=prep.antialias)
    return TF.center_crop(image, [prep.crop])


def load_imagefolder(
    root: Path, prep: Preprocess, channels: int, max_images: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """uint8 (N, C, crop, crop) images, (N,) labels (class folders in sorted order) and the
    number of classes."""
    import torch
    import torchvision.transforms.functional as TF
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d for d in root.iterdir() if d.is_dir())
    files = [
        (f, label)
        for label, d in enumerate(classes)
        for f in sorted(d.rglob("*"))
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not classes or not files:
        what = "class folders" if not classes else "images in its class folders"
        raise UserError(
            f"image folder {root} has no {what}: expected {root}/<class>/<image>"
            f" ({', '.join(IMAGE_EXTENSIONS)})"
        )
    chosen = [files[i] for i in _spread(len(files), max_images)]
    images = []
    for f, _ in chosen:
        try:
            with Image.open(f) as img:
                pil = img.convert("RGB" if channels == 3 else "L")
        except (OSError, UnidentifiedImageError) as err:
            raise UserError(f"cannot read image {f}: {err}") from err
        images.append(TF.pil_to_tensor(_geometry(prep, pil)))
    labels = torch.tensor([label for _, label in chosen], dtype=torch.int64)
    return torch.stack(images), labels, len(classes)


def load_prepared_split(
    root: Path, prep: Preprocess, max_images: int
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """A prepared dataset's validation split, resized and cropped (uint8), its labels, class
    count and multi-label flag."""
    import torch

    from iterconv.data.prepared import load_prepared

    data = load_prepared(root)
    if data.val_x.shape[0] == 0:
        raise UserError(f"prepared dataset {root} has an empty validation split")
    index = torch.tensor(_spread(data.val_x.shape[0], max_images))
    x, y = data.val_x[index], data.val_y[index]
    x = torch.cat([_geometry(prep, part) for part in x.split(256)])
    return x, y, data.num_classes, data.multilabel


def run_indices_model(args: argparse.Namespace) -> int:
    from iterconv.analysis.adapters import adapter_for
    from iterconv.analysis.indices import compute_indices, write_indices
    from iterconv.data.prepared import normalize
    from iterconv.train.device import resolve_device

    for name in ("extra", "batch_size", "max_batch"):
        _positive(name.replace("_", "-"), getattr(args, name))
    for name in ("max_images", "num_classes", "image_size"):
        _positive(name.replace("_", "-"), getattr(args, name), allow_zero=True)
    device = resolve_device(args.device)
    arch = parse_arch(args.arch)
    kind, root = parse_data(args.data)
    model, prep, weights = load_model(args, arch)
    adapter = adapter_for(model)
    channels = input_channels(model)
    if kind == "imagefolder":
        images, labels, n_classes = load_imagefolder(root, prep, channels, args.max_images)
        multilabel = False
    else:
        images, labels, n_classes, multilabel = load_prepared_split(root, prep, args.max_images)
    if n_classes != adapter.num_classes:
        raise UserError(
            f"--data {args.data} has {n_classes} classes, the network {adapter.num_classes} "
            "outputs: labels are the class indices (sorted folder names), so they must match"
        )
    if images.shape[1] not in (1, channels):
        raise UserError(
            f"--data {args.data} has {images.shape[1]} channels, the network takes {channels}"
        )

    import torch

    mean, std = torch.tensor(prep.mean), torch.tensor(prep.std)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != channels:  # grey images as RGB
            x = x.expand(-1, channels, -1, -1)
        return normalize(x, mean, std)

    model.to(device)
    result = compute_indices(
        adapter,
        images,
        labels,
        multilabel=multilabel,
        extra=args.extra,
        batch_size=args.batch_size,
        max_batch=args.max_batch,
        prepare=prepare,
        device=device,
    )
    result["run"] = f"{args.arch} ({weights})"
    result["model"] = {
        "arch": args.arch,
        "weights": weights,
        "data": args.data,
        "num_classes": adapter.num_classes,
        "preprocessing": prep.describe(),
    }
    try:
        write_indices(args.out, result)
    except OSError as err:
        raise UserError(f"cannot write {args.out}: {err.strerror}") from err
    return 0
