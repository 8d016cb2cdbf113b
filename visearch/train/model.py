"""The embedding model: a torchvision backbone plus a projection head to an L2-normalised vector.

Backbones are built with ``weights=None`` — nothing is ever downloaded. Pretrained weights come
from a local file (a torchvision state dict, e.g. ``resnet50-11ad3fa6.pth`` copied next to the
job) through ``init_weights``. ``small_stem`` swaps a ResNet's 7×7/2 convolution and max-pool
for one 3×3/1 convolution, the usual stem for 32-pixel images (CIFAR); ViTs take any image size
divisible by their patch size (position embeddings are interpolated when loading weights
trained at another size). ``width`` scales a ResNet's channels (stem and stages ``w, 2w, 4w, 8w``;
torchvision's is 64): 16 has about a sixteenth of the multiply-adds of 64 (a step ran ~9× faster on CPU).
Besides torchvision's ResNets and ViTs, ``vit_ti_16`` and ``vit_s_16``
are torchvision's ViT class at DeiT's Tiny and Small shapes, sized for CPUs.

The projection head is Linear → BatchNorm → ReLU → Linear (SimCLR's); the output is the
L2-normalised head output, so cosine similarity is a dot product.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import VisionTransformer

from visearch.core.config import ModelSettings
from visearch.train.preprocess import Preprocessing

log = logging.getLogger(__name__)

_RESNETS: dict[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
    "resnet152": torchvision.models.resnet152,
}


def _vit(num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int) -> Callable[..., VisionTransformer]:
    """A torchvision ViT of the given shape with patch 16 (DeiT's Tiny and Small shapes)."""

    def build(*, weights: None = None, image_size: int = 224) -> VisionTransformer:
        return VisionTransformer(
            image_size=image_size,
            patch_size=16,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
        )

    return build


_VITS: dict[str, Callable[..., VisionTransformer]] = {
    "vit_b_16": torchvision.models.vit_b_16,
    "vit_b_32": torchvision.models.vit_b_32,
    "vit_l_16": torchvision.models.vit_l_16,
    "vit_l_32": torchvision.models.vit_l_32,
    # torchvision's ViT class at DeiT-Ti/S sizes: 5.7M / 22M parameters, CPU-friendly.
    "vit_ti_16": _vit(12, 3, 192, 768),
    "vit_s_16": _vit(12, 6, 384, 1536),
}
#: Backbone names :func:`build_model` accepts.
BACKBONES: tuple[str, ...] = (*_RESNETS, *_VITS)

_HEAD_PREFIXES = ("fc.", "heads.")  # torchvision classifier heads, ignored when loading weights
#: Defaults of the architecture: the ``model`` settings' (their one source; :func:`build_model` builds from settings).
_MODEL_DEFAULTS = ModelSettings()


@dataclass(frozen=True)
class Architecture:
    """What is needed to rebuild an :class:`EmbeddingModel` (saved in ``config.json``)."""

    backbone: str = _MODEL_DEFAULTS.backbone
    embed_dim: int = _MODEL_DEFAULTS.embed_dim
    image_size: int = _MODEL_DEFAULTS.image_size
    small_stem: bool = _MODEL_DEFAULTS.small_stem
    width: int = _MODEL_DEFAULTS.width

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {BACKBONES}")
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {self.embed_dim!r}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size!r}")
        if self.small_stem and self.backbone not in _RESNETS:
            raise ValueError(f"small_stem applies to ResNets only, not {self.backbone!r}")
        if self.width < 1 or (self.width != 64 and self.backbone not in _RESNETS):
            raise ValueError(f"width must be >= 1 and applies to ResNets only, got {self.width!r} "
                             f"for {self.backbone!r}")
        if self.backbone in _VITS:
            patch = int(self.backbone.rsplit("_", 1)[1])
            if self.image_size % patch:
                raise ValueError(
                    f"{self.backbone} needs image_size divisible by {patch}, got {self.image_size}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "backbone": self.backbone,
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "small_stem": self.small_stem,
            "width": self.width,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        """Rebuild from :meth:`to_dict` (extra keys are ignored)."""
        return cls(
            backbone=str(data["backbone"]),
            embed_dim=int(data["embed_dim"]),
            image_size=int(data["image_size"]),
            small_stem=bool(data.get("small_stem", False)),
            width=int(data.get("width", 64)),
        )


class ScaledResNet(torchvision.models.ResNet):  # type: ignore[misc]  # torchvision is untyped
    """torchvision's ResNet with ``width`` channels in the stem and ``w, 2w, 4w, 8w`` in its stages.

    torchvision fixes the widths at 64…512; ``_make_layer`` is torchvision's own, called with the
    planes scaled by ``width / 64``, so blocks, strides and initialisation stay torchvision's.
    """

    def __init__(
        self,
        block: type[torchvision.models.resnet.BasicBlock | torchvision.models.resnet.Bottleneck],
        layers: list[int],
        width: int,
    ) -> None:
        self._width = width
        super().__init__(block, layers)
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(8 * width * block.expansion, 1000)

    def _make_layer(
        self,
        block: type[torchvision.models.resnet.BasicBlock | torchvision.models.resnet.Bottleneck],
        planes: int,
        blocks: int,
        stride: int = 1,
        dilate: bool = False,
    ) -> nn.Sequential:
        if planes == 64:  # the first stage: its input is the stem's output
            self.inplanes = self._width
        layer: nn.Sequential = super()._make_layer(block, planes * self._width // 64, blocks, stride, dilate)
        return layer


_RESNET_SHAPES: dict[str, tuple[type[torchvision.models.resnet.BasicBlock | torchvision.models.resnet.Bottleneck],
                                list[int]]] = {
    "resnet18": (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (torchvision.models.resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (torchvision.models.resnet.Bottleneck, [3, 4, 23, 3]),
    "resnet152": (torchvision.models.resnet.Bottleneck, [3, 8, 36, 3]),
}


def _build_backbone(arch: Architecture) -> tuple[nn.Module, int]:
    """A torchvision backbone without its classifier, and its feature width."""
    if arch.backbone in _RESNETS:
        if arch.width == 64:
            resnet = _RESNETS[arch.backbone](weights=None)
        else:
            resnet = ScaledResNet(*_RESNET_SHAPES[arch.backbone], arch.width)
        if arch.small_stem:
            resnet.conv1 = nn.Conv2d(3, arch.width, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(resnet.conv1.weight, mode="fan_out", nonlinearity="relu")
            resnet.maxpool = nn.Identity()  # type: ignore[assignment]
        width = resnet.fc.in_features
        resnet.fc = nn.Identity()  # type: ignore[assignment]
        return resnet, width
    vit = _VITS[arch.backbone](weights=None, image_size=arch.image_size)
    width = vit.hidden_dim
    vit.heads = nn.Identity()  # type: ignore[assignment]
    return vit, width


class EmbeddingModel(nn.Module):
    """Backbone → MLP projection head → L2-normalised embedding ``(B, embed_dim)``.

    Args:
        backbone: a name from :data:`BACKBONES`.
        embed_dim: size of the output embedding.
        image_size: input side the model is built for (ViT position embeddings depend on it).
        small_stem: ResNet only — 3×3 stride-1 first convolution and no max-pool (32-px inputs).
        width: ResNet only — channels of the stem (stages ``w, 2w, 4w, 8w``); 64 is torchvision's.
        prep: preprocessing constants carried with the model (default: ImageNet at ``image_size``).
        init_weights: optional local torchvision state dict loaded into the backbone
            (see :meth:`load_backbone_weights`).

    Raises:
        ValueError: for an unknown backbone, an invalid size or mismatching init weights.
        FileNotFoundError: when ``init_weights`` does not exist.
    """

    def __init__(
        self,
        backbone: str = _MODEL_DEFAULTS.backbone,
        embed_dim: int = _MODEL_DEFAULTS.embed_dim,
        image_size: int = _MODEL_DEFAULTS.image_size,
        small_stem: bool = _MODEL_DEFAULTS.small_stem,
        prep: Preprocessing | None = None,
        init_weights: str | Path | None = None,
        width: int = _MODEL_DEFAULTS.width,
    ) -> None:
        super().__init__()
        self.arch = Architecture(backbone, embed_dim, image_size, small_stem, width)
        self.prep = prep or Preprocessing(size=image_size)
        if self.prep.size != image_size:
            raise ValueError(f"preprocessing size {self.prep.size} differs from image_size {image_size}")
        self.backbone, width = _build_backbone(self.arch)
        self.feature_dim = width
        self.head = nn.Sequential(
            nn.Linear(width, width, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Linear(width, embed_dim),
        )
        if init_weights:
            self.load_backbone_weights(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch ``(B, 3, S, S)`` into unit vectors ``(B, embed_dim)``."""
        features = self.backbone(x)  # (B, F)
        z = self.head(features)  # (B, F) -> (B, D)
        return F.normalize(z.float(), dim=1)

    def load_backbone_weights(self, path: str | Path) -> None:
        """Load a torchvision state dict from a local file into the backbone.

        The classifier head (``fc.*`` / ``heads.*``) is ignored; a ``module.`` prefix (DDP) is
        stripped. With ``small_stem`` the checkpoint's 7×7 ``conv1`` is skipped (the small stem
        is new by design). ViT position embeddings are interpolated to this image size.

        Raises:
            FileNotFoundError: when ``path`` does not exist.
            ValueError: when the file is not a state dict, or its backbone keys or shapes do not
                match this backbone exactly.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"init weights {file} not found")
        loaded = torch.load(file, map_location="cpu", weights_only=True)
        if (
            isinstance(loaded, Mapping)
            and "state_dict" in loaded
            and isinstance(loaded["state_dict"], Mapping)
        ):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
        ):
            raise ValueError(f"{file} is not a torchvision state dict (a mapping of names to tensors)")
        state = {re.sub(r"^module\.", "", k): v for k, v in loaded.items()}
        state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
        own = self.backbone.state_dict()
        if self.arch.small_stem and "conv1.weight" in state:
            log.info(
                "small stem: skipping the checkpoint's conv1.weight %s", tuple(state["conv1.weight"].shape)
            )
            state["conv1.weight"] = own["conv1.weight"]
        if self.arch.backbone in _VITS and "encoder.pos_embedding" in state:
            state = self._fit_vit_positions(state)
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"{file} does not match backbone {self.arch.backbone}: "
                f"missing {missing[:8]}{'...' if len(missing) > 8 else ''} ({len(missing)}), "
                f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''} ({len(unexpected)})"
            )
        wrong = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items()
            if state[k].shape != v.shape
        ]
        if wrong:
            raise ValueError(f"{file} has wrong shapes for {self.arch.backbone}: {wrong[:8]}")
        self.backbone.load_state_dict(state, strict=True)
        log.info("loaded backbone weights for %s from %s (%d tensors)", self.arch.backbone, file, len(state))

    def _fit_vit_positions(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Interpolate a ViT checkpoint's position embeddings to this model's image size."""
        from torchvision.models.vision_transformer import interpolate_embeddings

        own_shape = self.backbone.state_dict()["encoder.pos_embedding"].shape
        if state["encoder.pos_embedding"].shape == own_shape:
            return state
        patch = int(self.arch.backbone.rsplit("_", 1)[1])
        log.info(
            "interpolating ViT position embeddings %s -> %s",
            tuple(state["encoder.pos_embedding"].shape),
            tuple(own_shape),
        )
        fitted = interpolate_embeddings(self.arch.image_size, patch, dict(state))
        return dict(fitted)


def build_model(settings: ModelSettings) -> EmbeddingModel:
    """The model the settings describe, with ``init_weights`` loaded into the backbone when set.

    Raises:
        ValueError: for an unknown backbone, invalid sizes or mismatching init weights.
        FileNotFoundError: when ``init_weights`` names a missing file.
    """
    return EmbeddingModel(
        backbone=settings.backbone,
        embed_dim=settings.embed_dim,
        image_size=settings.image_size,
        small_stem=settings.small_stem,
        prep=Preprocessing.from_settings(settings),
        init_weights=settings.init_weights or None,
        width=settings.width,
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (or the model)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model
