"""Start a model from pretrained weights instead of noise.

Sources (``--weights NAME|PATH`` and ``--init-from BUNDLE`` on ``geocamat train``):

- a torchvision weight enum, e.g. ``ResNet18_Weights.IMAGENET1K_V1``;
- a TorchGeo weight enum, e.g. ``ResNet18_Weights.SENTINEL2_RGB_MOCO`` (its bands and normalisation are
  recorded); ``torchvision:`` or ``torchgeo:`` in front of the name picks the library;
- a local state dict (``.pth``, ``.pt``, ``.bin``, ``.ckpt``, ``.safetensors``; a checkpoint's ``state_dict``
  too) in torchvision/timm ResNet naming or geocamat's own;
- a geocamat bundle (``model.geocamat``): the backbone of a land-use, scene or detection model trained here
  (and the whole detector when both are detectors of the same build).

Enum weights are fetched through torch.hub's cache (``torch.hub.get_dir()/checkpoints``, i.e.
``$TORCH_HOME/hub/checkpoints``); without network the error names the file and the folder to put it in.

Whatever the source, the weights are read into a :class:`ResNetWeights` (the stem and the basic blocks of
each stage, independent of the model they came from) and written into the target's stem and stages
(:func:`apply_weights`). geocamat's backbones are basic-block ResNets (:data:`geocamat.models.camnet.ARCHS`,
:data:`geocamat.models.detectors.BACKBONES`); weights that cannot fit (other widths, bottleneck ResNet-50)
are refused with one line. When the band count differs from the weights', the first convolution is adapted
as timm does for TorchGeo's models: repeated over the bands and scaled by ``bands of the weights / bands``
(summed for a single band).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from geocamat.errors import ConfigError, InputNotFoundError, WeightsError

STATE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
BUNDLE_SUFFIX = ".geocamat"
# prefixes that wrap a ResNet's keys in checkpoints (DataParallel, Lightning tasks, detection backbones ...)
_PREFIXES = ("module.", "model.", "backbone.", "body.", "encoder.", "net.", "state_dict.")
_DETECTOR_BODY = "detector.backbone.body."
# ImageNet statistics of torchvision's classification weights (RGB scaled to 0-1)
TORCHVISION_NORMALISATION = {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
# heads whose shape depends on the classes: copied from a detector bundle only when the classes are the same
_CLASS_HEADS = ("cam_head.", "detector.roi_heads.box_predictor.", "detector.head.classification_head.cls_logits.")


@dataclass
class ResNetWeights:
    """Weights of a basic-block ResNet, independent of the model they came from.

    Attributes:
        stem: stem tensors keyed as in geocamat's ``nn.Sequential`` stems (``0.weight`` the first convolution,
            ``1.*`` its batch norm; ``3.*``/``4.*`` the second convolution of a two-convolution stem).
        stages: per stage, per block, the block's tensors (``conv1.weight``, ``bn1.*``, ``conv2.weight``,
            ``bn2.*``, ``shortcut.0.weight``, ``shortcut.1.*``).
        rest: the other tensors, in the source model's own naming (``naming``).
        naming: ``torchvision`` (torchvision/timm ResNet keys), ``camnet`` or ``detector``.
        origin: what the weights are (recorded in the bundle as ``extra["init"]``).
        source_spec: the model spec of a geocamat bundle, else None.
    """

    stem: dict[str, Tensor]
    stages: list[list[dict[str, Tensor]]]
    rest: dict[str, Tensor] = field(default_factory=dict)
    naming: str = "torchvision"
    origin: dict = field(default_factory=dict)
    source_spec: dict | None = None

    @property
    def in_channels(self) -> int:
        """Bands the first convolution takes."""
        return int(self.stem["0.weight"].shape[1])

    @property
    def stem_kernel(self) -> int | None:
        """Kernel of a one-convolution stem; None for geocamat's two-3x3 detector stem."""
        return None if "3.weight" in self.stem else int(self.stem["0.weight"].shape[-1])

    @property
    def stem_width(self) -> int:
        """Output channels of the stem."""
        return int(self.stem["0.weight"].shape[0])

    @property
    def widths(self) -> list[int]:
        """Output channels of each stage."""
        return [int(blocks[-1]["conv2.weight"].shape[0]) for blocks in self.stages]

    @property
    def depths(self) -> list[int]:
        """Blocks of each stage."""
        return [len(blocks) for blocks in self.stages]

    @property
    def name(self) -> str:
        """A short name of the source for messages."""
        return str(self.origin.get("name") or self.origin.get("file") or "the weights")

    def describe(self) -> str:
        """E.g. ``stem 64 (7x7), stages 64-128-256-512 x 2-2-2-2``."""
        kernel = "two 3x3" if self.stem_kernel is None else f"{self.stem_kernel}x{self.stem_kernel}"
        return (f"stem {self.stem_width} ({kernel}), stages {'-'.join(map(str, self.widths))} x "
                f"{'-'.join(map(str, self.depths))}")


# ---------------------------------------------------------------- reading a state dict into the layout


def _naming(state: dict[str, Tensor]) -> tuple[str, dict[str, Tensor]]:
    """Which naming a state dict uses, after removing wrapping prefixes (``model.``, ``backbone.`` ...)."""
    for _ in range(4):
        if any(k.startswith(_DETECTOR_BODY) for k in state):
            return "detector", state
        if "stages.0.0.conv1.weight" in state and "stem.0.weight" in state:
            return "camnet", state
        if "conv1.weight" in state and "layer1.0.conv1.weight" in state:
            return "torchvision", state
        for prefix in _PREFIXES:
            inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if inner:
                state = inner
                break
        else:
            break
    raise WeightsError("the state dict is not a ResNet's (no conv1.weight + layer1.* keys, nor geocamat's "
                       "stem/stages): give ResNet-18/34 weights or a geocamat bundle")


def _layout(state: dict[str, Tensor], naming: str) -> tuple[dict, list[list[dict]], dict]:
    """Split a state dict in ``naming`` into (stem, stages, rest)."""
    if naming == "torchvision":
        stem_re, stage_re, base = re.compile(r"^(conv1|bn1)\.(.+)$"), re.compile(r"^layer(\d+)\.(\d+)\.(.+)$"), 1
    elif naming == "camnet":
        stem_re, stage_re, base = re.compile(r"^stem\.(.+)$"), re.compile(r"^stages\.(\d+)\.(\d+)\.(.+)$"), 0
    else:
        stem_re = re.compile(r"^" + re.escape(_DETECTOR_BODY) + r"stem\.(.+)$")
        stage_re, base = re.compile(r"^" + re.escape(_DETECTOR_BODY) + r"layer(\d+)\.(\d+)\.(.+)$"), 1
    stem: dict[str, Tensor] = {}
    found: dict[int, dict[int, dict[str, Tensor]]] = {}
    rest: dict[str, Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, Tensor):
            continue
        m = stem_re.match(key)
        if m:
            if naming == "torchvision":
                stem[("0." if m.group(1) == "conv1" else "1.") + m.group(2)] = value
            else:
                stem[m.group(1)] = value
            continue
        m = stage_re.match(key)
        if m:
            inner = m.group(3).replace("downsample.", "shortcut.")
            found.setdefault(int(m.group(1)) - base, {}).setdefault(int(m.group(2)), {})[inner] = value
            continue
        rest[key] = value
    stages = []
    for i in range(len(found)):
        if i not in found:
            raise WeightsError(f"the state dict's stages are not numbered 0..{len(found) - 1}: not a ResNet")
        blocks = found[i]
        stages.append([blocks[j] for j in range(len(blocks)) if j in blocks])
    if "0.weight" not in stem or not stages:
        raise WeightsError("the state dict has no stem convolution or no stage: not a ResNet")
    if any("conv3.weight" in block for blocks in stages for block in blocks):
        raise WeightsError("these are bottleneck ResNet weights (ResNet-50 and deeper); geocamat's backbones are "
                           "basic-block ResNets: use ResNet-18/34 weights (e.g. ResNet18_Weights.IMAGENET1K_V1, or "
                           "a TorchGeo ResNet18_Weights.*)")
    return stem, stages, rest


def weights_from_state(state: dict[str, Tensor], origin: dict, source_spec: dict | None = None) -> ResNetWeights:
    """A :class:`ResNetWeights` from a state dict in torchvision/timm, CamNet or detector naming."""
    naming, state = _naming(state)
    stem, stages, rest = _layout(state, naming)
    return ResNetWeights(stem, stages, rest, naming, origin, source_spec)


# ---------------------------------------------------------------- sources


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_state_file(path: Path) -> dict:
    """A tensor dict from a ``.safetensors`` file or a torch checkpoint (unwrapping ``state_dict``)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            payload = load_file(str(path))
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except ImportError as exc:
        raise WeightsError(f"reading {path.name} needs the safetensors package (pip install safetensors)") from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        pickled = re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if pickled:  # torch.save(model): code to run, which a weights file must not need
            raise WeightsError(f"{path} holds a whole pickled model ({pickled[0]}), not a state dict: load it where "
                               "you trust it and save its weights, torch.save(model.state_dict(), 'weights.pth')"
                               ) from exc
        raise WeightsError(f"{path} is not a readable state dict ({exc.__class__.__name__}): give a .pth/.pt "
                           ".safetensors state dict or a model.geocamat bundle") from exc
    if not isinstance(payload, dict):
        raise WeightsError(f"{path} holds a {type(payload).__name__}, not a state dict")
    for key in ("state_dict", "model_state_dict", "model", "net"):
        if isinstance(payload.get(key), dict) and payload.get("format") is None:
            payload = payload[key]
            break
    return payload


def weights_from_bundle(path: Path) -> ResNetWeights:
    """The weights of a geocamat bundle, with its task, architecture, bands and classes as origin."""
    from geocamat.bundle import Bundle

    bundle = Bundle.load(path)
    spec = bundle.model
    origin = {"source": "bundle", "name": str(path), "file": str(path), "sha256": _sha256(path),
              "task": bundle.task, "model": {k: v for k, v in spec.items() if k not in ("num_classes",)},
              "bands": list(bundle.bands), "classes": [c.name for c in bundle.classes],
              "normalisation": {"mean": list(bundle.mean), "std": list(bundle.std)}}
    return weights_from_state(bundle.state_dict, origin, spec)


def weights_from_file(path: Path) -> ResNetWeights:
    """A local state dict (``.pth``/``.pt``/``.safetensors`` ...) or a geocamat bundle."""
    if path.suffix == BUNDLE_SUFFIX:
        return weights_from_bundle(path)
    payload = _read_state_file(path)
    if payload.get("format") == "geocamat-bundle":
        return weights_from_bundle(path)
    state = {k: v for k, v in payload.items() if isinstance(v, Tensor)}
    if not state:
        raise WeightsError(f"{path} holds no tensors: give a state dict")
    origin = {"source": "file", "name": path.name, "file": str(path), "sha256": _sha256(path)}
    return weights_from_state(state, origin)


def find_enum(spec: str):
    """The weight enum member named by ``spec`` (``[torchvision:|torchgeo:]Enum.MEMBER``) and its library.

    Raises:
        WeightsError: no such enum, or not a basic-block ResNet's (checked before anything is downloaded).
    """
    library, name = (spec.split(":", 1) if ":" in spec else (None, spec))
    if library not in (None, "torchvision", "torchgeo"):
        raise WeightsError(f"unknown weights library {library!r}: use torchvision: or torchgeo:")
    if "." not in name:
        raise WeightsError(f"unknown weights {spec!r}: give an enum such as ResNet18_Weights.IMAGENET1K_V1 "
                           "(torchvision) or ResNet18_Weights.SENTINEL2_RGB_MOCO (TorchGeo), or a file "
                           "(.pth, .safetensors, model.geocamat)")
    enum_name, member = name.rsplit(".", 1)
    enum_name = enum_name.rsplit(".", 1)[-1]
    members: list[str] = []
    for lib in ([library] if library else ["torchvision", "torchgeo"]):
        if lib == "torchvision":
            import torchvision.models as tvm
            import torchvision.models.detection as tvd

            enum = getattr(tvm, enum_name, None) or getattr(tvd, enum_name, None)
        else:
            import torchgeo.models as tgm

            enum = getattr(tgm, enum_name, None)
        if enum is None or not hasattr(enum, "__members__"):
            continue
        if member in enum.__members__:
            weights = enum[member]
            model = str(weights.meta.get("model") or enum_name.removesuffix("_Weights")).lower()
            if not re.fullmatch(r"resnet(18|34)", model):
                raise WeightsError(f"{enum_name}.{member} are {model} weights; geocamat's backbones are basic-block "
                                   "ResNets: use ResNet18_Weights.* or ResNet34_Weights.*")
            return lib, weights
        members += [f"{enum_name}.{m}" for m in enum.__members__]
    hint = f"known: {', '.join(sorted(set(members)))}" if members else \
        "e.g. ResNet18_Weights.IMAGENET1K_V1 (torchvision), ResNet18_Weights.SENTINEL2_RGB_MOCO (TorchGeo)"
    raise WeightsError(f"unknown weights {spec!r}; {hint}")


def _normalisation(library: str, weights) -> dict | None:
    """Input scaling the weights were trained with (TorchGeo: from the enum's Normalize transform)."""
    if library == "torchvision":
        return dict(TORCHVISION_NORMALISATION)
    transforms = getattr(weights, "transforms", None)
    if isinstance(transforms, nn.Module):
        for module in transforms.modules():
            mean, std = getattr(module, "mean", None), getattr(module, "std", None)
            if mean is not None and std is not None:
                return {"mean": torch.as_tensor(mean).flatten().tolist(),
                        "std": torch.as_tensor(std).flatten().tolist()}
    return None


def fetch_state(url: str, name: str, progress: bool = False) -> tuple[dict, Path]:
    """The state dict at ``url`` through torch.hub's cache, and the cached file.

    Raises:
        WeightsError: the file is not cached and cannot be downloaded (one line naming the file and the cache
            folder to put it in), or the cached file is unreadable.
    """
    from urllib.parse import urlparse

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    filename = Path(urlparse(url).path).name
    cached = folder / filename
    if not cached.is_file():  # the same file and folder as torch.hub.load_state_dict_from_url
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached), progress=progress)
        except Exception as exc:  # noqa: BLE001 - network and disk errors all end in the same advice
            reason = str(getattr(exc, "reason", "") or exc).splitlines()[0][:80] or exc.__class__.__name__
            raise WeightsError(f"cannot download {name} ({reason}): without network, copy {filename} (from {url}) "
                               f"into {folder} and run again, or pass --weights FILE") from exc
    try:
        state = torch.load(cached, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsError(f"{cached} is not a readable state dict ({exc.__class__.__name__}): delete it and "
                           f"run again with network, or copy a good {filename} there") from exc
    return state, cached


def weights_from_enum(spec: str, progress: bool = False) -> ResNetWeights:
    """torchvision or TorchGeo weights by enum name, fetched through torch.hub's cache."""
    library, weights = find_enum(spec)
    name = f"{type(weights).__name__}.{weights.name}"
    state, cached = fetch_state(weights.url, name, progress)
    meta = weights.meta
    origin = {"source": library, "name": name, "url": weights.url, "file": str(cached),
              "bands": list(meta["bands"]) if meta.get("bands") else (
                  ["red", "green", "blue"] if library == "torchvision" else None),
              "normalisation": _normalisation(library, weights)}
    for key in ("dataset", "ssl_method", "in_chans"):
        if key in meta:
            origin[key] = meta[key]
    return weights_from_state(state, origin)


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or Path(spec).suffix in (*STATE_SUFFIXES, BUNDLE_SUFFIX)


def load_weights(spec: str, progress: bool = False) -> ResNetWeights:
    """Weights named by ``--weights``: an existing file, else a torchvision/TorchGeo enum.

    Raises:
        InputNotFoundError: a path that does not exist.
        WeightsError: unknown enum, no network and no cached file, unreadable or non-ResNet weights.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return weights_from_file(path)
    if _looks_like_path(spec):
        raise InputNotFoundError(f"weights file not found: {spec}")
    return weights_from_enum(spec, progress)


def load_init(weights: str | None, init_from: str | None, progress: bool = False) -> ResNetWeights | None:
    """The starting weights of a run: ``--weights NAME|PATH`` or ``--init-from BUNDLE`` (not both), or None."""
    if weights and init_from:
        raise ConfigError("give --weights or --init-from, not both")
    if init_from:
        path = Path(init_from).expanduser()
        if not path.is_file():
            raise InputNotFoundError(f"--init-from: model bundle not found: {init_from}")
        return weights_from_bundle(path)
    if weights:
        return load_weights(str(weights), progress)
    return None


# ---------------------------------------------------------------- fitting the target model


def adapt_first_conv(weight: Tensor, in_channels: int) -> tuple[Tensor, str | None]:
    """The first convolution's weights for ``in_channels`` bands, as timm adapts them for TorchGeo models.

    One band: the kernels summed over the weights' bands. Otherwise: repeated over the bands (cut to
    ``in_channels``) and scaled by ``weights' bands / in_channels``, so a constant image gives the same response.

    Returns:
        (weights (O, in_channels, k, k), a one-line note, or None when nothing changed).
    """
    base = int(weight.shape[1])
    if base == in_channels:
        return weight, None
    w = weight.float()
    if in_channels == 1:
        out = w.sum(dim=1, keepdim=True)
        note = f"first convolution summed from {base} bands into 1"
    else:
        out = w.repeat(1, math.ceil(in_channels / base), 1, 1)[:, :in_channels] * (base / in_channels)
        note = (f"first convolution adapted from {base} to {in_channels} bands (weights repeated over the bands, "
                f"scaled by {base}/{in_channels})")
    return out.to(weight.dtype), note


def _target_keys(naming: str):
    if naming == "camnet":
        return (lambda k: f"stem.{k}"), (lambda i, j, k: f"stages.{i}.{j}.{k}")
    return (lambda k: f"{_DETECTOR_BODY}stem.{k}"), (lambda i, j, k: f"{_DETECTOR_BODY}layer{i + 1}.{j}.{k}")


def _refuse(weights: ResNetWeights, target: ResNetWeights, what: str) -> WeightsError:
    return WeightsError(f"{weights.name} cannot start this model: {what} (weights: {weights.describe()}; model: "
                        f"{target.describe()}); choose the matching arch/backbone, or unset it (--set arch=null / "
                        "--set backbone=null, also over a config file's) to take the weights' own")


def apply_weights(model: nn.Module, weights: ResNetWeights, classes: list[str] | None = None) -> dict:
    """Load ``weights`` into a CamNet's or a Detector's backbone (and the rest of a detector where it matches).

    The stem and the blocks of each stage are taken from the weights (the first blocks of a stage when the
    model's stage is shorter; the model's first stages when it has fewer); the first convolution is adapted
    to the model's bands (:func:`adapt_first_conv`). From a geocamat bundle of the same kind of model, every
    other tensor of the same name and shape is taken too (a class head only when the classes are the same).

    Returns:
        The record stored in the bundle as ``extra["init"]``: the origin, ``scope``, ``tensors`` loaded,
        ``first_conv`` note, ``blocks`` note and ``skipped`` keys.

    Raises:
        WeightsError: widths, stem or depths that cannot match (one line saying which).
    """
    own = model.state_dict()
    naming, _ = _naming(own)
    target = weights_from_state(own, {"name": "the model"})
    stem_key, stage_key = _target_keys(naming)
    new: dict[str, Tensor] = {}
    if set(target.stem) != set(weights.stem):
        raise _refuse(weights, target, "the stems differ")
    note = None
    for key, value in weights.stem.items():
        if key == "0.weight":
            value, note = adapt_first_conv(value, target.in_channels)
        if value.shape != target.stem[key].shape:
            raise _refuse(weights, target, f"stem {key} is {tuple(value.shape)} in the weights and "
                                           f"{tuple(target.stem[key].shape)} in the model")
        new[stem_key(key)] = value
    if len(target.stages) > len(weights.stages):
        raise _refuse(weights, target, f"the model has {len(target.stages)} stages, the weights "
                                       f"{len(weights.stages)}")
    shorter = False
    for i, blocks in enumerate(target.stages):
        source = weights.stages[i]
        if len(blocks) > len(source):
            raise _refuse(weights, target, f"stage {i + 1} has {len(blocks)} blocks in the model and {len(source)} "
                                           "in the weights")
        shorter |= len(blocks) < len(source)
        for j, block in enumerate(blocks):
            for key, t in block.items():
                value = source[j].get(key)
                if value is None or value.shape != t.shape:
                    got = "missing" if value is None else tuple(value.shape)
                    raise _refuse(weights, target, f"stage {i + 1} block {j + 1} {key} is {got} in the weights "
                                                   f"and {tuple(t.shape)} in the model")
                new[stage_key(i, j, key)] = value
    backbone = len(new)
    skipped: list[str] = []
    same_classes = classes is not None and weights.origin.get("classes") == list(classes)
    if weights.naming == naming:
        for key, value in weights.rest.items():
            if key not in own:
                continue
            class_head = key.startswith(_CLASS_HEADS) or (naming == "camnet" and key.startswith("head."))
            if own[key].shape == value.shape and (same_classes or not class_head):
                new[key] = value
            else:
                skipped.append(key)
    state = dict(own)
    state.update({k: v.to(own[k].dtype) for k, v in new.items()})
    model.load_state_dict(state)
    scope = "backbone" if len(new) == backbone else ("whole detector" if naming == "detector" and not skipped
                                                     else "backbone and matching layers")
    used = len(target.stages) < len(weights.stages)
    blocks_note = None
    if shorter or used:
        blocks_note = (f"the model takes the first {'-'.join(map(str, target.depths))} blocks of the weights' "
                       f"{'-'.join(map(str, weights.depths))}")
    return {**weights.origin, "scope": scope, "tensors": len(new), "first_conv": note, "blocks": blocks_note,
            "skipped": skipped}


def init_message(record: dict) -> str:
    """The one line a run prints about its starting weights."""
    parts = [f"starting from {record.get('name')} ({record.get('source')}): {record['tensors']} tensors into the "
             f"{record['scope']}"]
    if record.get("first_conv"):
        parts.append(record["first_conv"])
    if record.get("blocks"):
        parts.append(record["blocks"])
    if record.get("skipped"):
        parts.append(f"{len(record['skipped'])} other tensors not taken (classes or shapes differ)")
    bands = record.get("bands")
    if bands and record.get("source") in ("torchvision", "torchgeo"):
        norm = record.get("normalisation") or {}
        scaled = f", trained on values normalised by mean {norm.get('mean')} / std {norm.get('std')}" if norm else ""
        parts.append(f"the weights expect bands {', '.join(map(str, bands))} in that order{scaled}; geocamat "
                     "normalises each band by the data's own mean/std (the training images', or each image's)")
    return "; ".join(parts)


# ---------------------------------------------------------------- choosing the architecture from the weights


def camnet_arch(weights: ResNetWeights) -> str:
    """The CamNet arch (:data:`~geocamat.models.camnet.ARCHS`) whose stem and stages fit the weights."""
    from geocamat.models.camnet import ARCHS

    return _pick(weights, {name: (s["widths"][0], s["widths"], s["depths"]) for name, s in ARCHS.items()}, "arch")


def detector_backbone(weights: ResNetWeights) -> str:
    """The detector backbone (:data:`~geocamat.models.detectors.BACKBONES`) whose stem and stages fit."""
    from geocamat.models.detectors import BACKBONES

    return _pick(weights, {name: (s["widths"][0], s["widths"][1:], s["depths"]) for name, s in BACKBONES.items()},
                 "backbone")


def _pick(weights: ResNetWeights, table: dict[str, tuple], what: str) -> str:
    fits = []
    for name, (stem, widths, depths) in table.items():
        n = len(widths)
        if stem == weights.stem_width and list(widths) == weights.widths[:n] and len(weights.stages) >= n \
                and all(d <= s for d, s in zip(depths, weights.depths, strict=False)):
            fits.append((list(depths) == weights.depths[:n], sum(depths), name))
    if not fits:
        raise WeightsError(f"no {what} of geocamat fits {weights.name} ({weights.describe()}): give ResNet-18/34 "
                           "weights or a bundle with a resnet10/resnet18 backbone")
    return max(fits)[2]
