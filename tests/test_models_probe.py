"""petl_core models and trace() against timm's own modules, number for number (random weights, CPU)."""
from __future__ import annotations

import threading

import pytest
import timm
import torch
from timm.utils import AttentionExtract

import petl_core
from petl_core import create_model, trace
from petl_core.models import GPSA

# (timm name, kwargs): 4 and 9 heads, non-224 sizes, one-channel input, custom depth and GPSA depth.
CONVIT_CONFIGS = [
    ("convit_tiny", {}),
    ("convit_small", {"img_size": 96}),
    ("convit_tiny", {"img_size": 48, "patch_size": 8, "in_chans": 1, "num_heads": 9, "embed_dim": 16,
                     "depth": 4, "local_up_to_layer": 2, "locality_strength": 2.0, "num_classes": 10}),
]
VIT_CONFIGS = [
    ("deit_tiny_patch16_224", {}),
    ("vit_small_patch16_224", {"img_size": 96, "num_classes": 7}),
]


def _pair(name: str, kwargs: dict, seed: int = 0):
    """Our instrumented model and timm's, with the same weights, both in eval mode."""
    torch.manual_seed(seed)
    ours = create_model(name, **kwargs).eval()
    reference = timm.create_model(name, **kwargs).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    for module in reference.modules():
        if hasattr(module, "fused_attn"):  # timm's own non-fused branch materialises the weights we compare to
            module.fused_attn = False
    return ours, reference


def _images(model: torch.nn.Module, batch: int, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, model.patch_embed.proj.in_channels, *model.patch_embed.img_size)


@pytest.mark.parametrize("name,kwargs", CONVIT_CONFIGS + VIT_CONFIGS)
def test_state_dict_is_timms_both_ways(name, kwargs):
    ours, reference = _pair(name, kwargs)
    assert list(ours.state_dict()) == list(reference.state_dict())
    fresh = create_model(name, **kwargs)
    fresh.load_state_dict(reference.state_dict(), strict=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize("name,kwargs", CONVIT_CONFIGS + VIT_CONFIGS)
def test_trace_matches_timm_block_by_block(name, kwargs):
    ours, reference = _pair(name, kwargs)
    x = _images(ours, batch=3)
    with torch.no_grad():
        expected_logits = reference(x)
    expected_attention = list(AttentionExtract(reference, method="hook")(x).values())
    t = trace(ours, x)

    assert torch.allclose(t.logits, expected_logits, atol=1e-5, rtol=0)
    assert len(t.attention) == len(ours.blocks) == len(expected_attention)
    for i, (got, want) in enumerate(zip(t.attention, expected_attention, strict=True)):
        assert got.shape == want.shape, i
        assert torch.allclose(got, want, atol=1e-5, rtol=0), f"block {i}: {(got - want).abs().max()}"
        assert torch.allclose(got.sum(-1), torch.ones(()), atol=1e-5)
    patches = ours.patch_embed.num_patches
    assert t.grid == tuple(ours.patch_embed.grid_size)
    assert [a.shape[-1] - patches for a in t.attention] == t.num_prefix


@pytest.mark.parametrize("name,kwargs", CONVIT_CONFIGS)
def test_gpsa_parts_recombine_and_match_timm(name, kwargs):
    ours, reference = _pair(name, kwargs)
    x = _images(ours, batch=2)
    with torch.no_grad():
        reference(x)  # builds timm's rel_indices
    t = trace(ours, x)
    gpsa_blocks = [i for i, b in enumerate(ours.blocks) if isinstance(b.attn, GPSA)]
    assert t.gated_blocks == gpsa_blocks == list(range(ours.local_up_to_layer))
    assert t.gate_matrix.shape == (len(gpsa_blocks), ours.blocks[0].attn.num_heads)
    for row, i in enumerate(gpsa_blocks):
        ref_attn = reference.blocks[i].attn
        with torch.no_grad():
            ref_positional = ref_attn.pos_proj(ref_attn.rel_indices).permute(0, 3, 1, 2).softmax(-1)
        assert t.positional[i].shape[0] == 1  # never expanded over the batch
        assert torch.allclose(t.positional[i], ref_positional, atol=1e-6)
        gate = t.gates[i].view(1, -1, 1, 1)
        mixed = (1 - gate) * t.content[i] + gate * t.positional[i]
        assert torch.allclose(mixed, t.attention[i], atol=1e-6)
        # the captured queries and keys are timm's qk projection of the block's input, and give the content part
        assert t.queries[i].shape == t.keys[i].shape == (2, ref_attn.num_heads, t.content[i].shape[-1],
                                                         ref_attn.qk.in_features // ref_attn.num_heads)
        content = (t.queries[i] @ t.keys[i].transpose(-2, -1) * ref_attn.scale).softmax(-1)
        assert torch.allclose(content, t.content[i], atol=1e-6)
        assert torch.equal(t.gate_matrix[row], t.gates[i])
        assert torch.allclose(t.gates[i], torch.sigmoid(ref_attn.gating_param))
        # Δ_h and α_h read from timm's own pos_proj: the positional logit peaks at Δ_h with curvature α_h
        w = ref_attn.pos_proj.weight.detach()
        assert torch.allclose(t.strengths[i], -w[:, 2])
        assert torch.allclose(t.centres[i], w[:, :2] / (2 * t.strengths[i][:, None]))
    for i in range(ours.local_up_to_layer, len(ours.blocks)):
        assert t.content[i] is None and t.positional[i] is None and t.gates[i] is None and t.centres[i] is None
        assert t.queries[i] is None and t.keys[i] is None
        assert t.num_prefix[i] == 1
    moved = t.to("meta")
    assert moved.attention[0].device.type == "meta" and moved.gates[0].device.type == "meta"
    assert moved.gates[-1] is None and moved.grid == t.grid and t.attention[0].device.type == "cpu"


def _closed_form_positional(grid: int, centres, alpha: float) -> torch.Tensor:
    """methods.md §1.3: P^h_ij ∝ exp(-α(‖δ_ij - Δ_h‖² - ‖Δ_h‖²)), δ = key - query, written with loops."""
    num = grid * grid
    out = torch.empty(len(centres), num, num, dtype=torch.float64)
    for h, (cx, cy) in enumerate(centres):
        for i in range(num):
            logits = torch.empty(num, dtype=torch.float64)
            for j in range(num):
                dx, dy = j % grid - i % grid, j // grid - i // grid
                logits[j] = -alpha * ((dx - cx) ** 2 + (dy - cy) ** 2 - (cx ** 2 + cy ** 2))
            out[h, i] = logits.softmax(0)
    return out


@pytest.mark.parametrize("num_heads,alpha", [(4, 1.0), (9, 1.0), (9, 2.0)])
def test_positional_attention_at_local_init_is_the_closed_form(num_heads, alpha):
    model = create_model("convit_tiny", img_size=112, num_heads=num_heads, depth=1, local_up_to_layer=1,
                         locality_strength=alpha).eval()
    t = trace(model, torch.randn(1, 3, 112, 112))
    k = int(num_heads ** 0.5)
    c = (k - 1) / 2
    # Head p = a + k*b has centre (Δx, Δy) = (b - c, a - c): column-major over the k×k kernel.
    centres = [((p // k) - c, (p % k) - c) for p in range(num_heads)]
    expected = _closed_form_positional(7, centres, alpha)
    assert torch.allclose(t.positional[0][0].double(), expected, atol=1e-6)
    centre_query = 3 * 7 + 3
    if num_heads == 9:
        # methods.md §1.3: the centre head's peak at an interior query is 0.318 (α=1) and 0.619 (α=2).
        assert t.positional[0][0, 4, centre_query].max().item() == pytest.approx(
            {1.0: 0.318, 2.0: 0.619}[alpha], abs=5e-4)
    else:
        top = t.positional[0][0, 0, centre_query].topk(4).values
        assert torch.allclose(top, torch.full((4,), 0.193), atol=5e-4)  # 4 tied keys of a 2×2 block
    assert torch.allclose(t.gate_matrix, torch.full_like(t.gate_matrix, 0.7311), atol=1e-4)
    assert torch.allclose(t.centres[0], torch.tensor(centres))  # the layout written above, read back
    assert torch.allclose(t.strengths[0], torch.full((num_heads,), alpha))


def test_positional_cache_follows_weight_changes():
    ours, reference = _pair("convit_tiny", {"img_size": 64})
    x = _images(ours, batch=2)
    before = trace(ours, x).positional[0]
    assert trace(ours, x).positional[0].data_ptr() == before.data_ptr()  # cached per model and resolution
    new_state = {k: v + 0.5 * torch.randn_like(v) if "pos_proj" in k else v for k, v in ours.state_dict().items()}
    ours.load_state_dict(new_state)
    reference.load_state_dict(new_state)
    after = trace(ours, x)
    with torch.no_grad():
        expected = reference(x)
    assert not torch.allclose(after.positional[0], before)
    assert torch.allclose(after.logits, expected, atol=1e-5)
    # An optimiser step changes the weights in place: the cache must follow that too.
    ours.train()
    optimizer = torch.optim.SGD(ours.parameters(), lr=1.0)
    ours(x).square().mean().backward()
    assert ours.blocks[0].attn.pos_proj.weight.grad.abs().sum() > 0  # trained positional path keeps its graph
    assert ours.blocks[0].attn.gating_param.grad.abs().sum() > 0
    optimizer.step()
    ours.eval()
    reference.load_state_dict(ours.state_dict())
    with torch.no_grad():
        assert torch.allclose(ours(x), reference(x), atol=1e-5)
    assert torch.allclose(trace(ours, x).logits, reference(x).detach(), atol=1e-5)


@pytest.mark.parametrize("name,kwargs", [CONVIT_CONFIGS[0], VIT_CONFIGS[0]])
def test_traced_and_untraced_forwards_agree(name, kwargs):
    ours, _ = _pair(name, kwargs)
    x = _images(ours, batch=2)
    with torch.no_grad():
        plain = ours(x)
    traced = trace(ours, x)
    assert torch.allclose(traced.logits, plain, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(ours(x), plain)  # tracing left nothing behind


def test_threads_tracing_one_model_get_their_own_results():
    ours, _ = _pair("convit_tiny", {"img_size": 64})
    inputs = [_images(ours, batch=b, seed=s) for s, b in ((1, 1), (2, 3), (3, 2), (4, 1))]
    expected = [trace(ours, x) for x in inputs]
    barrier = threading.Barrier(len(inputs))
    results: dict[int, list] = {i: [] for i in range(len(inputs))}

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            results[i].append(trace(ours, inputs[i]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i, want in enumerate(expected):
        assert len(results[i]) == 5
        for got in results[i]:
            assert torch.allclose(got.logits, want.logits, atol=1e-6)
            for a, b in zip(got.attention, want.attention, strict=True):
                assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


def test_trace_refuses_an_uninstrumented_model_and_instrument_fixes_it():
    model = timm.create_model("deit_tiny_patch16_224", img_size=32, depth=2).eval()
    with pytest.raises(ValueError, match="not instrumented"):
        trace(model, torch.randn(1, 3, 32, 32))
    petl_core.instrument(model)
    assert len(trace(model, torch.randn(1, 3, 32, 32)).attention) == 2
    with pytest.raises(ValueError, match="not supported"):
        petl_core.instrument(timm.create_model("resnet18"))


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'convit_huge'"):
        create_model("convit_huge")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trace_on_cuda_matches_cpu():
    ours, _ = _pair("convit_tiny", {})
    x = _images(ours, batch=2)
    cpu = trace(ours, x)
    gpu = trace(ours.cuda(), x.cuda())
    assert torch.allclose(gpu.logits.cpu(), cpu.logits, atol=1e-4)
    for a, b in zip(gpu.attention, cpu.attention, strict=True):
        assert torch.allclose(a.cpu(), b, atol=1e-5)
