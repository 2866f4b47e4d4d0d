"""Convpass injection, training set-up and adapter files (random weights, CPU)."""
from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from petl_core import ConvpassConfig, add_convpass, create_model, load_convpass, save_convpass, trace
from petl_core.convpass import ConvpassBlock

SMALL_VIT = {"img_size": 64, "patch_size": 16, "embed_dim": 48, "depth": 3, "num_heads": 3, "num_classes": 7}


def _small_vit(seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("vit_tiny_patch16_224", **{**SMALL_VIT, **overrides})


def _images(model: torch.nn.Module, batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *model.patch_embed.img_size, generator=generator)


def _randomise_adapters(model: torch.nn.Module, seed: int = 2, std: float = 0.2) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adapter_" in name or name.startswith("head."):
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def _adapter_param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "adapter_" in n)


# ---------------------------------------------------------------------------------------------------------------
# ViT-B/16: the paper's parameter counts and the adapter file size
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_base():
    torch.manual_seed(0)
    return create_model("vit_base_patch16_224", pretrained=False, num_classes=10)


def test_vit_base_bypass_parameter_counts(vit_base):
    d, h, depth = 768, 8, 12
    per_module = d * h + h + 9 * h * h + h + h * d + d  # methods.md §2.1: 13,648
    assert per_module == 13_648
    both = add_convpass(copy.deepcopy(vit_base), dim=8, where="both")
    attn = add_convpass(copy.deepcopy(vit_base), dim=8, where="attn")
    assert _adapter_param_count(both) == 2 * depth * per_module == 327_552
    assert _adapter_param_count(attn) == depth * per_module == 163_776
    # Trainable = bypasses + head (768·10 + 10), nothing else.
    head = d * 10 + 10
    assert sum(p.numel() for p in both.parameters() if p.requires_grad) == 327_552 + head
    assert sum(p.numel() for p in attn.parameters() if p.requires_grad) == 163_776 + head


def test_vit_base_adapter_file_holds_only_adapters_and_head(vit_base, tmp_path):
    model = add_convpass(copy.deepcopy(vit_base), dim=8, where="both")
    path = tmp_path / "base.safetensors"
    save_convpass(model, path)
    payload = (327_552 + 768 * 10 + 10) * 4  # float32
    size = path.stat().st_size
    assert payload <= size < payload + 64 * 1024  # header and metadata only on top
    assert size < 1.5e6  # "about 1.4 MB per task" (README), vs ~344 MB for the whole backbone


# ---------------------------------------------------------------------------------------------------------------
# Injection: identity at init, grid from the model, state-dict naming
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["both", "attn"])
@pytest.mark.parametrize("conv_init", ["identity", "xavier"])
def test_adapted_model_equals_backbone_at_init(where, conv_init):
    backbone = _small_vit().eval()
    adapted = add_convpass(copy.deepcopy(backbone), where=where, conv_init=conv_init).eval()
    assert all(isinstance(b, ConvpassBlock) for b in adapted.blocks)
    x = _images(backbone)
    with torch.no_grad():
        expected = backbone(x)
        got = adapted(x)
    assert torch.equal(got, expected)
    # Traced too (explicit rather than fused attention, so equal up to rounding), and the bypass captured is
    # exactly zero while its conv is not.
    t = trace(adapted, x)
    torch.testing.assert_close(t.logits, got, rtol=1e-5, atol=1e-6)
    for captured in t.bypass:
        assert torch.count_nonzero(captured["attn"].output) == 0
        assert torch.count_nonzero(captured["attn"].conv) > 0
    # And once the up-projection is nonzero, the logits move.
    _randomise_adapters(adapted)
    with torch.no_grad():
        assert (adapted(x) - expected).abs().max() > 1e-3


def test_conv_init_identity_is_a_centre_tap_pass_through():
    model = add_convpass(_small_vit(), dim=6, conv_init="identity")
    conv = model.blocks[0].adapter_attn.adapter_conv
    expected = torch.zeros(6, 6, 3, 3)
    expected[:, :, 1, 1] = torch.eye(6)
    assert torch.equal(conv.weight, expected)
    assert torch.count_nonzero(conv.bias) == 0
    up = model.blocks[0].adapter_attn.adapter_up
    assert torch.count_nonzero(up.weight) == 0 and torch.count_nonzero(up.bias) == 0
    down = model.blocks[0].adapter_attn.adapter_down
    assert torch.count_nonzero(down.bias) == 0 and torch.count_nonzero(down.weight) == down.weight.numel()
    xavier = add_convpass(_small_vit(), dim=6, conv_init="xavier").blocks[0].adapter_attn.adapter_conv.weight
    bound = (6.0 / (6 * 9 + 6 * 9)) ** 0.5  # xavier-uniform over fan_in = fan_out = 6·3·3
    assert xavier.abs().max() <= bound and xavier.abs().max() > 0.5 * bound
    assert torch.count_nonzero(xavier[:, :, 0, 0]) > 0


def test_only_adapters_and_head_are_trainable_and_get_gradients():
    model = add_convpass(_small_vit()).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if "adapter_" in n or n.startswith("head.")}
    assert {"head.weight", "head.bias", "blocks.0.adapter_attn.adapter_up.weight"} <= trainable
    assert not any(n.startswith(("patch_embed", "pos_embed", "cls_token", "norm.")) for n in trainable)

    x = _images(model, batch=4)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    for name, param in model.named_parameters():
        if name not in trainable:
            assert param.grad is None, name
            continue
        assert param.grad is not None, name
        if "adapter_up" in name or name.startswith("head."):
            assert torch.count_nonzero(param.grad) > 0, name  # W_up and b_up learn at step 0 (methods.md §2.6)
        else:
            assert torch.count_nonzero(param.grad) == 0, name  # adapter_down / adapter_conv: behind W_up = 0

    # With a nonzero up-projection every bypass parameter gets a gradient.
    model.zero_grad(set_to_none=True)
    _randomise_adapters(model)
    F.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    for name, param in model.named_parameters():
        if name in trainable:
            assert torch.count_nonzero(param.grad) > 0, name
        else:
            assert param.grad is None, name


def test_grid_comes_from_the_model():
    model = add_convpass(_small_vit(img_size=(48, 80)), dim=4).eval()
    assert tuple(model.patch_embed.grid_size) == (3, 5)
    for block in model.blocks:
        assert block.adapter_attn.grid == (3, 5) and block.adapter_mlp.grid == (3, 5)
        assert block.adapter_attn.num_prefix_tokens == 1
    _randomise_adapters(model)
    x = _images(model)
    assert x.shape == (2, 3, 48, 80)
    t = trace(model, x)
    assert t.logits.shape == (2, 7)
    assert t.bypass[0]["attn"].conv.shape == (2, 4, 3, 5)
    assert t.bypass[0]["attn"].output.shape == (2, 16, 48)


def test_state_dict_is_timms_plus_official_adapter_keys():
    kwargs = {**SMALL_VIT, "depth": 2}
    backbone = _small_vit(depth=2)
    adapted = add_convpass(copy.deepcopy(backbone)).eval()
    torch.manual_seed(0)
    plain = timm.create_model("vit_tiny_patch16_224", **kwargs).eval()
    keys = list(adapted.state_dict())
    timm_keys = list(plain.state_dict())
    expected_adapter_keys = {
        f"blocks.{i}.adapter_{branch}.adapter_{layer}.{kind}"
        for i in range(2) for branch in ("attn", "mlp") for layer in ("down", "conv", "up")
        for kind in ("weight", "bias")
    }
    assert {k for k in keys if "adapter_" in k} == expected_adapter_keys
    assert [k for k in keys if "adapter_" not in k] == timm_keys
    assert adapted.state_dict()["blocks.1.adapter_mlp.adapter_conv.weight"].shape == (8, 8, 3, 3)

    # The backbone part loads strictly into timm's plain model, which then computes the same logits (at init).
    plain.load_state_dict({k: v for k, v in adapted.state_dict().items() if "adapter_" not in k}, strict=True)
    x = _images(plain)
    with torch.no_grad():
        assert torch.equal(plain(x), adapted(x))


# ---------------------------------------------------------------------------------------------------------------
# Adapter files
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def trained_adapter(tmp_path):
    """A small adapted ViT whose adapters and head were 'trained' (set to random values), and its file."""
    model = add_convpass(_small_vit(seed=0), dim=4, scale=2.5, where="both", conv_init="xavier", dropout=0.2)
    _randomise_adapters(model)
    path = tmp_path / "adapter.safetensors"
    save_convpass(model, path)
    return model.eval(), path


def test_save_and_load_round_trip(trained_adapter):
    model, path = trained_adapter
    fresh = _small_vit(seed=0)  # same backbone weights, no bypasses yet
    load_convpass(fresh, path)
    fresh.eval()
    assert fresh.convpass_config == ConvpassConfig(dim=4, scale=2.5, where="both", conv_init="xavier", dropout=0.2)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    x = _images(model)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(fresh(x), expected)
    # The adapters really matter here: the bare backbone differs.
    with torch.no_grad():
        assert (_small_vit(seed=0).eval()(x) - expected).abs().max() > 1e-2
    # Loading again onto an already adapted model with the same config works too.
    load_convpass(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), expected)


def test_load_resizes_the_head(trained_adapter):
    model, path = trained_adapter
    other = _small_vit(seed=0, num_classes=3)
    backbone = {k: v for k, v in model.state_dict().items() if "adapter_" not in k and not k.startswith("head.")}
    missing, unexpected = other.load_state_dict(backbone, strict=False)  # same backbone, 3-class head
    assert sorted(missing) == ["head.bias", "head.weight"] and not unexpected
    assert other.head.weight.shape == (3, 48)
    load_convpass(other, path).eval()
    assert other.head.weight.shape == (7, 48)
    assert other.num_classes == 7
    assert other.head.weight.requires_grad and not other.blocks[0].attn.qkv.weight.requires_grad
    x = _images(model)
    with torch.no_grad():
        assert torch.equal(other(x), model(x))


def test_file_without_head_keeps_the_models_head(tmp_path):
    model = add_convpass(_small_vit(seed=0), dim=4)
    _randomise_adapters(model)
    path = tmp_path / "nohead.safetensors"
    save_convpass(model, path, include_head=False)
    other = _small_vit(seed=0, num_classes=3)
    head = other.head.weight.detach().clone()
    load_convpass(other, path)
    assert torch.equal(other.head.weight, head)
    for key, value in model.state_dict().items():
        if "adapter_" in key:
            assert torch.equal(other.state_dict()[key], value), key


def test_load_rejects_a_file_for_another_width(tmp_path):
    wide = add_convpass(_small_vit(seed=0, embed_dim=64, num_heads=4), dim=4)
    path = tmp_path / "wide.safetensors"
    save_convpass(wide, path)
    narrow = _small_vit(seed=0)  # embed_dim 48
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    with pytest.raises(ValueError, match="adapts 3 blocks of width 64, the backbone has 3 blocks of width 48"):
        load_convpass(narrow, path)
    # A file that does not fit leaves the model as it was: no bypasses, no new head, nothing frozen.
    assert not any(type(b).__name__ == "ConvpassBlock" for b in narrow.blocks)
    assert narrow.state_dict().keys() == before.keys()
    assert all(torch.equal(narrow.state_dict()[k], v) for k, v in before.items())
    assert all(p.requires_grad for p in narrow.parameters())


def test_load_rejects_a_file_for_another_depth(tmp_path):
    deep = add_convpass(_small_vit(seed=0, depth=4), dim=4)
    path = tmp_path / "deep.safetensors"
    save_convpass(deep, path)
    with pytest.raises(ValueError, match="adapts 4 blocks of width 48, the backbone has 3 blocks"):
        load_convpass(_small_vit(seed=0), path)


def test_load_onto_a_headless_backbone_adds_the_files_head(trained_adapter):
    model, path = trained_adapter
    headless = _small_vit(seed=0, num_classes=0)
    load_convpass(headless, path)
    assert torch.equal(headless.head.weight, model.head.weight)
    assert headless.head.weight.requires_grad


def test_load_rejects_a_plain_safetensors_file(tmp_path):
    model = add_convpass(_small_vit(seed=0), dim=4)
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if "adapter_" in k}, str(path))
    with pytest.raises(ValueError, match="not a Convpass adapter file"):
        load_convpass(_small_vit(seed=0), path)


def test_load_rejects_a_different_config_on_an_adapted_model(trained_adapter):
    _, path = trained_adapter
    other = add_convpass(_small_vit(seed=0), dim=8)
    with pytest.raises(ValueError, match="differ"):
        load_convpass(other, path)


def test_save_needs_bypasses(tmp_path):
    with pytest.raises(ValueError):
        save_convpass(_small_vit(), tmp_path / "x.safetensors")


# ---------------------------------------------------------------------------------------------------------------
# Config and scale
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"where": "mlp"}, {"conv_init": "zeros"}, {"dim": 0}, {"dropout": 1.0},
                                    {"dropout": -0.1}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        ConvpassConfig(**kwargs)
    with pytest.raises(ValueError):
        add_convpass(_small_vit(depth=1), **kwargs)


def test_add_convpass_refuses_twice_and_non_vit():
    model = add_convpass(_small_vit(depth=1))
    with pytest.raises(ValueError):
        add_convpass(model)
    with pytest.raises(ValueError):
        add_convpass(create_model("convit_tiny", img_size=32, depth=1, local_up_to_layer=1))


def test_doubling_scale_doubles_the_bypass_exactly():
    model = add_convpass(_small_vit(depth=2), dim=4, scale=1.5, where="attn").eval()
    _randomise_adapters(model)
    x = _images(model)
    # Only the first block's bypass sees the same input under both scales.
    single = trace(model, x).bypass[0]["attn"].output
    for block in model.blocks:
        block.scale = 3.0
    double = trace(model, x).bypass[0]["attn"].output
    assert single.abs().max() > 1e-3
    assert torch.equal(double, 2 * single)

    # Same through add_convpass(scale=...) on identical weights.
    other = add_convpass(_small_vit(depth=2), dim=4, scale=3.0, where="attn").eval()
    other.load_state_dict(model.state_dict())
    assert torch.equal(trace(other, x).bypass[0]["attn"].output, double)
