"""petl_core as a drop-in for timm: TorchScript, feature wrappers, FX, timm's AttentionExtract and every public
method the capturing modules inherit give timm's numbers; what cannot be instrumented is refused clearly.
(timm's own test_models.py runs on these models in tests/timm_models/.)"""
from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import timm
import torch
from timm.models import convit as timm_convit
from timm.utils import AttentionExtract
from torch import nn

import petl_core
from petl_core import add_convpass, create_model, trace
from petl_core.capture import recording
from petl_core.models import GPSA, MHSA, Attention

SMALL = {  # (timm name, kwargs): every family petl_core instruments, small enough for the quick selection
    "convit": ("convit_tiny", dict(img_size=48, patch_size=8, depth=4, local_up_to_layer=2, num_heads=4,
                                   embed_dim=16)),
    "deit": ("deit_tiny_patch16_224", dict(img_size=48, depth=3)),
    "distilled": ("deit_tiny_distilled_patch16_224", dict(img_size=48, depth=3)),
    "registers": ("vit_small_patch14_reg4_dinov2", dict(img_size=42, depth=2)),
}


def _pair(family: str, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Ours and timm's with the same random weights, eval mode, timm's non-fused attention (whose weights
    timm's tools read) in both."""
    name, kwargs = SMALL[family]
    torch.manual_seed(seed)
    ours = create_model(name, **kwargs).eval()
    reference = timm.create_model(name, **kwargs).eval()
    reference.load_state_dict(ours.state_dict())
    for module in [*ours.modules(), *reference.modules()]:
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    return ours, reference


def _images(model: nn.Module, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, 3, *model.patch_embed.img_size)


def _logits(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # a distilled DeiT in eval returns one tensor


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("family", sorted(SMALL))
def test_a_scripted_model_computes_timms_numbers_and_the_eager_model_still_captures(family):
    ours, reference = _pair(family)
    x = _images(ours)
    with torch.no_grad():
        ours(x)  # after a forward, as a user would: the Python-side caches are filled
    scripted = torch.jit.script(ours)
    with torch.no_grad():
        assert torch.allclose(_logits(scripted(x)), _logits(reference(x)), atol=1e-5, rtol=0)
    traced = trace(ours, x)  # scripting compiled timm's forward and left the Python modules instrumented
    assert len(traced.attention) == len(ours.blocks)


@pytest.mark.parametrize("family", sorted(SMALL))
@pytest.mark.parametrize("method", ["hook", "fx"])
def test_timms_attention_extract_returns_timms_maps_and_the_traced_ones(family, method):
    ours, reference = _pair(family)
    x = _images(ours)
    got = AttentionExtract(ours, method=method)(x)
    want = AttentionExtract(reference, method=method)(x)
    assert list(got) == list(want) and want  # same names, in the same order, and not none
    for name, maps in want.items():
        assert torch.allclose(got[name], maps, atol=1e-6, rtol=0), name
    traced = trace(ours, x)
    for name, maps in got.items():  # "blocks.3.attn.attn_drop" or "blocks.3.attn.softmax"
        assert torch.allclose(maps, traced.attention[int(name.split(".")[1])], atol=1e-6, rtol=0), name


def test_attention_extract_finds_every_block_of_a_convit_by_hook_and_only_mhsa_by_fx():
    """timm's GPSA is a leaf of FX traces (register_notrace_module), ours too: fx sees the MHSA blocks only."""
    ours, _ = _pair("convit")
    x = _images(ours)
    assert len(AttentionExtract(ours, method="hook")(x)) == len(ours.blocks)
    assert list(AttentionExtract(ours, method="fx")(x)) == [
        f"blocks.{i}.attn.softmax" for i in range(ours.local_up_to_layer, len(ours.blocks))]


def test_a_convpass_vit_traces_with_fx_and_timms_tools_read_it():
    ours, _ = _pair("deit")
    add_convpass(ours, dim=4)
    ours.eval()
    for block in ours.blocks:  # bypasses that do something
        nn.init.normal_(block.adapter_attn.adapter_up.weight)
    x = _images(ours)
    graph = torch.fx.symbolic_trace(ours)
    with torch.no_grad():
        assert torch.allclose(graph(x), ours(x), atol=1e-6, rtol=0)
    traced = trace(ours, x)
    for method in ("hook", "fx"):
        maps = list(AttentionExtract(ours, method=method)(x).values())
        assert len(maps) == len(ours.blocks)
        assert all(torch.allclose(m, t, atol=1e-6, rtol=0) for m, t in zip(maps, traced.attention, strict=True))
    with pytest.raises(ValueError, match="Convpass built for"):  # the shape check still speaks outside FX
        ours.blocks[0].adapter_attn(torch.randn(1, 5, ours.embed_dim))


@pytest.mark.parametrize("family", ["deit", "convit"])
def test_features_only_wraps_an_instrumented_model_with_timms_features(family):
    name, kwargs = SMALL[family]
    torch.manual_seed(0)
    ours = create_model(name, features_only=True, **kwargs).eval()
    reference = timm.create_model(name, features_only=True, **kwargs).eval()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad(), recording() as recorder:
        got = ours(x)
        want = reference(x)
    assert len(got) == len(want) >= 1
    assert all(torch.allclose(g, w, atol=1e-5, rtol=0) for g, w in zip(got, want, strict=True))
    captured = recorder.get(ours.model.blocks[0].attn, "attention")
    tokens = ours.model.patch_embed.num_patches + (family == "deit")  # ConViT's class token joins later
    assert captured.shape[-2:] == (tokens, tokens) and torch.allclose(captured.sum(-1), torch.ones(()), atol=1e-6)


def test_parallel_blocks_are_instrumented_and_trace_says_what_it_cannot_lay_out():
    model = create_model("vit_small_patch16_18x2_224", img_size=32, depth=2).eval()
    branches = [branch.attn for block in model.blocks for branch in block.attns]
    assert len(branches) == 4 and all(isinstance(a, Attention) for a in branches)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad(), recording() as recorder:
        model(x)
    assert all(recorder.get(a, "attention").shape == (1, 6, 5, 5) for a in branches)
    with pytest.raises(ValueError, match="ParallelThingsBlock has several"):
        trace(model, x)


class _OtherAttention(nn.Module):
    def forward(self, x):
        return x


def test_an_unknown_attention_or_block_is_refused_and_nothing_is_swapped():
    for name, kwargs in (SMALL["deit"], SMALL["convit"]):
        model = timm.create_model(name, **kwargs)
        model.blocks[-1].attn = _OtherAttention()
        with pytest.raises(ValueError, match="cannot instrument attention of type _OtherAttention"):
            petl_core.instrument(model)
        assert type(model.blocks[0].attn).__module__.startswith("timm.")  # left as it was
    model = timm.create_model(*SMALL["deit"][:1], **SMALL["deit"][1])
    model.blocks[1] = nn.Identity()
    with pytest.raises(ValueError, match="cannot instrument a Identity"):
        petl_core.instrument(model)


# How to call each public method the capturing modules inherit from timm's, on a module and an input (B, N, C).
_CALLS = {
    "forward": lambda m, x: m(x),
    "get_attention": lambda m, x: m.get_attention(x),
    "get_attention_map": lambda m, x: m.get_attention_map(x, return_map=True),
    "get_rel_indices": lambda m, x: m.get_rel_indices(x.shape[1]),
    "local_init": lambda m, x: (m.local_init(), m.state_dict())[1],
    "init_non_persistent_buffers": lambda m, x: (m.init_non_persistent_buffers(), m.rel_indices)[1],
}


def _public_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("ours_cls,timm_cls,tokens", [
    (GPSA, timm_convit.GPSA, 16), (MHSA, timm_convit.MHSA, 16), (Attention, timm.layers.Attention, 17)])
def test_every_inherited_public_method_returns_timms_numbers(ours_cls, timm_cls, tokens):
    """After the same forward calls (timm's GPSA methods read a buffer its forward keeps at the current grid;
    timm's MHSA.get_attention_map takes patch tokens only, hence 16 there)."""
    assert _public_methods(timm_cls) <= set(_CALLS), "a public method of timm's with no check here"
    for name in _public_methods(timm_cls):
        torch.manual_seed(0)
        reference = timm_cls(48, num_heads=4).eval()
        ours = petl_core.models._adopt.adopt(timm_cls(48, num_heads=4), ours_cls).eval()
        ours.load_state_dict(reference.state_dict())
        if hasattr(reference, "fused_attn"):
            reference.fused_attn = False
        x = torch.randn(2, tokens, 48)
        with torch.no_grad():
            for module in (ours, reference):
                module(torch.randn(1, 9, 48))
                module(x)
            assert _same(_CALLS[name](ours, x), _CALLS[name](reference, x)), name


def test_gpsa_get_attention_is_right_at_any_grid_whatever_ran_before():
    torch.manual_seed(0)
    reference = timm_convit.GPSA(48, num_heads=4).eval()
    ours = petl_core.models._adopt.adopt(timm_convit.GPSA(48, num_heads=4), GPSA).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 16, 48)
    with torch.no_grad():
        ours(torch.randn(1, 9, 48))  # timm's own get_attention would fail here, on 3×3 indices
        reference(x)
        assert _same(ours.get_attention(x), reference.get_attention(x))


def test_timms_own_model_tests_are_here_at_the_installed_version():
    """tests/timm_models/ runs them (scripts/setup.sh --test fetches them): without the file it would pass empty."""
    here = Path(__file__).parent / "timm_models"
    assert (here / "test_models.py").is_file(), "run scripts/setup.sh --test (or python -m scripts.fetch_timm_tests)"
    assert (here / "TIMM_VERSION").read_text().strip() == version("timm")
    assert "def test_model_forward_torchscript" in (here / "test_models.py").read_text()
