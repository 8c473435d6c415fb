"""Local weights: ``file:<path>`` (+ ``arch``) and ``run:<run folder>`` (an earlier run's backbone)."""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

import torch
from torch import nn

from .._runfolder import read_model
from ..errors import BackboneError
from ..heads import build_head
from ._base import Backbone
from ._registry import backbone_from_spec, register_kind, register_source
from ._timm import check_arch
from ._torchvision import load_tv_file


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors or PyTorch state dict without running any pickled code."""
    if not path.is_file():
        raise BackboneError(f"Weights file {path} does not exist", "a .safetensors, .pt or .pth file",
                            "Check the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # loaded on first use

        try:
            return load_file(str(path))
        except Exception as exc:
            raise BackboneError(f"Weights file {path} is damaged or not safetensors ({exc})", None,
                                "Re-download or re-save the file") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        foreign = _foreign_global(path)
        if foreign:
            raise BackboneError(
                f"Refused to load {path}: it holds pickled Python objects ({foreign}) that could run code",
                "a plain state dict of tensors (loaded with weights_only=True)",
                "Re-save it with torch.save(model.state_dict(), ...) or as safetensors from a trusted copy",
            ) from None
        raise BackboneError(f"Weights file {path} is damaged ({str(exc).splitlines()[0][:120]})", None,
                            "Re-download or re-save the file") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise BackboneError(f"Weights file {path} is damaged or truncated ({str(exc).splitlines()[0][:120]})",
                            None, "Re-download or re-save the file") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path} does not hold a state dict of tensors", "a mapping name → tensor",
                            "Save the weights with torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _foreign_global(path: Path) -> str | None:
    """Name the first non-torch global a pickle would import, reading opcodes without running them."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        else:
            data = path.read_bytes()
        strings: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            opcode = op.name
            if opcode in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(arg))
            if opcode == "GLOBAL" and not str(arg).startswith(("torch", "collections")):
                return str(arg).replace(" ", ".")
            if opcode == "STACK_GLOBAL" and len(strings) >= 2 and not strings[-2].startswith(("torch", "collections")):
                return f"{strings[-2]}.{strings[-1]}"
    except Exception:
        return None
    return None


def load_into(model: nn.Module, state: dict[str, torch.Tensor], where: str, ignore: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``model``; name the first missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    for k, v in state.items():
        if k.startswith(ignore):
            continue
        if k not in own:
            raise BackboneError(f"{where} has tensor '{k}', which the architecture does not have",
                                "weights saved from the same architecture", "Check --arch")
        if tuple(own[k].shape) != tuple(v.shape):
            raise BackboneError(
                f"{where}: tensor '{k}' has shape {tuple(v.shape)}, the architecture needs {tuple(own[k].shape)}",
                "weights saved from the same architecture", "Check --arch")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise BackboneError(f"{where} lacks tensor '{missing[0]}' ({len(missing)} missing in all)",
                            "weights for every layer of the architecture", "Check --arch")
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(ignore)}, strict=False)


@register_source("file", "a local .safetensors/.pt state dict; give the timm architecture with --arch")
def load_file_weights(name: str, arch: str | None = None, **_) -> Backbone:
    import timm  # heavy: loaded on first use

    if not arch:
        raise BackboneError(f"file:{name} needs its architecture", "--arch <timm name>, e.g. --arch resnet18",
                            "Pass --arch with the timm model the weights were saved from")
    if arch.startswith("tv:"):  # a torchvision detector's checkpoint (--task detect)

        return load_tv_file(Path(name), arch[3:], read_weights, load_into)
    arch = check_arch(arch)
    state = read_weights(Path(name))
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    clf = (getattr(model, "pretrained_cfg", {}) or {}).get("classifier", "classifier")
    load_into(model, state, f"Weights file {name}", ignore=(f"{clf}.", "fc.", "head."))
    head = None
    if f"{clf}.weight" in state and state[f"{clf}.weight"].ndim == 2:
        w = state[f"{clf}.weight"]
        head = nn.Linear(w.shape[1], w.shape[0], bias=f"{clf}.bias" in state)
        head.load_state_dict({k.split(".")[-1]: v for k, v in state.items() if k.startswith(f"{clf}.")})
        head.eval()
    return Backbone(model, {"kind": "timm", "arch": arch}, dict(model.pretrained_cfg), head)


@register_source("run", "the backbone of an earlier transferkit run (source → target transfer)")
def load_run_backbone(name: str, **_) -> Backbone:
    meta, state = read_model(Path(name))
    backbone = backbone_from_spec(meta["backbone"], meta["pretrained_cfg"], Path(name))
    load_into(backbone, {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")},
              f"Run folder {name}")
    # The earlier run's classifier is this backbone's source head (used by LEEP/NCE).

    head = build_head(meta["head"], backbone.num_features, len(meta["labels"]))
    head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
    backbone.__dict__["source_head"] = head.eval()
    return backbone


@register_kind("timm")
def timm_from_spec(spec: dict, pretrained_cfg: dict, run_dir: Path | None = None) -> Backbone:
    import timm  # heavy: loaded on first use

    return Backbone(timm.create_model(spec["arch"], pretrained=False, num_classes=0), spec, pretrained_cfg)
