"""Model registry (timm-style): architectures chosen by name, one logit, no pretrained weights."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn

    return deco


def create_model(name: str, stem: str = "small") -> nn.Module:
    if name not in MODELS:
        from lensaudit.errors import ConfigError

        raise ConfigError(f"unknown architecture {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](stem=stem)


@register_model("resnet18")
def resnet18(stem: str = "small") -> nn.Module:
    """torchvision ResNet-18 with one logit; 'small' stem = 3×3 stride-1 conv and no max-pool (small
    stamps)."""
    from torchvision.models import resnet18 as tv

    m = tv(weights=None, num_classes=1)
    if stem == "small":
        m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
    return m


@register_model("efficientnet_b0")
def efficientnet_b0(stem: str = "small") -> nn.Module:
    """torchvision EfficientNet-B0 with one logit (stem stride 1 when 'small')."""
    from torchvision.models import efficientnet_b0 as tv

    m = tv(weights=None, num_classes=1)
    if stem == "small":
        conv = m.features[0][0]
        m.features[0][0] = nn.Conv2d(3, conv.out_channels, 3, stride=1, padding=1, bias=False)
    return m


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Features before the final layer (B, D): the head (`fc` for ResNets, `classifier` otherwise) is
    bypassed."""
    name = "fc" if hasattr(model, "fc") else "classifier"
    head = getattr(model, name)
    setattr(model, name, nn.Identity())
    try:
        return model(x)
    finally:
        setattr(model, name, head)
