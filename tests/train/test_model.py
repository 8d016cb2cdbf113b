"""Embedding model: normalised output, small stem, ViT sizes, local init weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from visearch.core.config import ModelSettings
from visearch.train.model import EmbeddingModel, build_model, unwrap

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("backbone", "size", "small_stem"),
    [
        ("resnet18", 32, True),
        ("resnet18", 32, False),
        ("resnet50", 32, False),
        ("vit_ti_16", 32, False),
        ("vit_b_16", 32, False),
    ],
)
def test_model__output_is_l2_normalised(backbone: str, size: int, small_stem: bool) -> None:
    torch.manual_seed(0)
    model = EmbeddingModel(backbone, embed_dim=24, image_size=size, small_stem=small_stem).eval()
    with torch.inference_mode():
        out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 24) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert not torch.allclose(out[0], out[1])


def test_model__small_stem_keeps_32px_resolution_in_layer1() -> None:
    model = EmbeddingModel("resnet18", 16, 32, small_stem=True).eval()
    backbone = model.backbone
    assert isinstance(backbone, torchvision.models.ResNet)
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, nn.Identity)
    shapes: list[tuple[int, ...]] = []
    backbone.layer1.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    with torch.inference_mode():
        model(torch.randn(2, 3, 32, 32))
    assert shapes == [(2, 64, 32, 32)]  # the ImageNet stem would leave 8×8


def test_model__vit_takes_non_224_sizes_and_rejects_indivisible_ones() -> None:
    model = EmbeddingModel("vit_ti_16", 8, image_size=48).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 48, 48)).shape == (2, 8)
    with pytest.raises(ValueError, match="divisible by 16"):
        EmbeddingModel("vit_ti_16", 8, image_size=40)
    with pytest.raises(ValueError, match="ResNets only"):
        EmbeddingModel("vit_ti_16", 8, image_size=32, small_stem=True)
    with pytest.raises(ValueError, match="unknown backbone"):
        EmbeddingModel("alexnet", 8, 32)


def test_model__channels_last_gives_the_same_embeddings() -> None:
    torch.manual_seed(1)
    model = EmbeddingModel("resnet18", 16, 32).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        plain = model(x)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        fast = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(plain, fast, atol=1e-5, rtol=1e-4)


def save_torchvision_resnet18(path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_build_model__loads_init_weights_from_a_torchvision_state_dict(tmp_path: Path) -> None:
    saved = save_torchvision_resnet18(tmp_path / "resnet18.pth", seed=5)
    settings = ModelSettings(
        backbone="resnet18", embed_dim=16, image_size=32, init_weights=str(tmp_path / "resnet18.pth")
    )
    model = build_model(settings)
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in saved if not k.startswith("fc.")}
    for key, value in loaded.items():
        assert torch.equal(value, saved[key]), key
    assert model.prep.size == 32


def test_build_model__small_stem_keeps_its_own_conv1(tmp_path: Path) -> None:
    saved = save_torchvision_resnet18(tmp_path / "resnet18.pth")
    model = build_model(
        ModelSettings(
            backbone="resnet18",
            embed_dim=8,
            image_size=32,
            small_stem=True,
            init_weights=str(tmp_path / "resnet18.pth"),
        )
    )
    own = model.backbone.state_dict()
    assert own["conv1.weight"].shape == (64, 3, 3, 3)
    assert torch.equal(own["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])


def test_load_backbone_weights__strips_ddp_prefix(tmp_path: Path) -> None:
    saved = save_torchvision_resnet18(tmp_path / "plain.pth", seed=2)
    torch.save({f"module.{k}": v for k, v in saved.items()}, tmp_path / "ddp.pth")
    model = EmbeddingModel("resnet18", 8, 32)
    model.load_backbone_weights(tmp_path / "ddp.pth")
    assert torch.equal(model.backbone.state_dict()["bn1.weight"], saved["bn1.weight"])


def test_load_backbone_weights__rejects_the_wrong_backbone_with_a_clear_error(tmp_path: Path) -> None:
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    model = EmbeddingModel("resnet18", 8, 32)
    with pytest.raises(ValueError, match=r"does not match backbone resnet18: .*unexpected \['layer1\.2"):
        model.load_backbone_weights(tmp_path / "resnet34.pth")
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "bad_shape.pth")
    with pytest.raises(ValueError, match="wrong shapes"):
        model.load_backbone_weights(tmp_path / "bad_shape.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a torchvision state dict"):
        model.load_backbone_weights(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError):
        model.load_backbone_weights(tmp_path / "missing.pth")


def test_load_backbone_weights__interpolates_vit_positions_to_a_new_size(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = EmbeddingModel("vit_ti_16", 8, image_size=64)
    torch.save(source.backbone.state_dict(), tmp_path / "vit64.pth")
    target = EmbeddingModel("vit_ti_16", 8, image_size=32)
    target.load_backbone_weights(tmp_path / "vit64.pth")
    got = target.backbone.state_dict()
    assert got["encoder.pos_embedding"].shape == (1, 1 + 4, 192)
    assert torch.equal(
        got["encoder.pos_embedding"][:, :1], source.backbone.state_dict()["encoder.pos_embedding"][:, :1]
    )
    assert torch.equal(got["conv_proj.weight"], source.backbone.state_dict()["conv_proj.weight"])


def test_unwrap__returns_the_inner_module_of_a_wrapper() -> None:
    model = EmbeddingModel("resnet18", 8, 32)
    assert unwrap(nn.DataParallel(model)) is model
    assert unwrap(model) is model


def test_model__width_scales_resnet_channels_and_round_trips_through_settings() -> None:
    torch.manual_seed(0)
    model = build_model(ModelSettings(backbone="resnet18", embed_dim=8, image_size=32, small_stem=True, width=16))
    backbone = model.backbone
    assert isinstance(backbone, torchvision.models.ResNet)
    assert backbone.conv1.out_channels == 16 and backbone.conv1.kernel_size == (3, 3)
    assert [backbone.layer1[0].conv1.out_channels, backbone.layer2[0].conv1.out_channels,
            backbone.layer3[0].conv1.out_channels, backbone.layer4[0].conv1.out_channels] == [16, 32, 64, 128]
    assert model.feature_dim == 128
    full = sum(p.numel() for p in EmbeddingModel("resnet18", 8, 32, small_stem=True).backbone.parameters())
    assert sum(p.numel() for p in backbone.parameters()) < full / 12  # ~width² fewer weights
    assert model.arch.to_dict()["width"] == 16
    with torch.inference_mode():
        out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 8)
    with pytest.raises(ValueError, match="width"):
        EmbeddingModel("vit_ti_16", 8, 32, width=16)
