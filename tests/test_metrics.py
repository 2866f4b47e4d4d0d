"""petl_core.metrics against closed forms, brute-force loops and hand-built attention (random weights, CPU)."""
from __future__ import annotations

import math

import pytest
import torch

from petl_core import add_convpass, create_model, metrics, trace
from petl_core.query import CLS, Query

# ---------------------------------------------------------------------------------------------------------------
# Independent helpers (plain loops, no petl_core.grid)
# ---------------------------------------------------------------------------------------------------------------


def _uniform_mean_distance(side: int) -> float:
    """Mean distance between two uniformly drawn cells of a side×side grid, by counting offset pairs."""
    total = 0.0
    for dx in range(-(side - 1), side):
        for dy in range(-(side - 1), side):
            total += (side - abs(dx)) * (side - abs(dy)) * math.hypot(dx, dy)
    return total / side**4


def _one_hot_offset(grid: tuple[int, int], a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, P) attention: query (r, c) looks only at (r + b, c + a), or at itself when that is off the grid.

    Also returns the (P,) mask of queries whose target is on the grid.
    """
    rows, cols = grid
    P = rows * cols
    attention = torch.zeros(P, P)
    interior = torch.zeros(P, dtype=torch.bool)
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            tr, tc = r + b, c + a
            if 0 <= tr < rows and 0 <= tc < cols:
                attention[i, tr * cols + tc] = 1.0
                interior[i] = True
            else:
                attention[i, i] = 1.0
    return attention, interior


def _with_prefix(patch_attention: torch.Tensor, num_prefix: int, prefix_weight: float = 0.3) -> torch.Tensor:
    """Embed (..., P, P) patch attention into (..., N, N): prefix rows uniform, patch rows put `prefix_weight`
    on the prefix keys and scale the rest, so rows still sum to 1 and the patch part renormalises back."""
    *lead, P, _ = patch_attention.shape
    N = num_prefix + P
    full = torch.zeros(*lead, N, N, dtype=patch_attention.dtype)
    full[..., :num_prefix, :] = 1.0 / N
    full[..., num_prefix:, :num_prefix] = prefix_weight / num_prefix
    full[..., num_prefix:, num_prefix:] = (1.0 - prefix_weight) * patch_attention
    return full


def _random_attention(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).mul(2.0).softmax(dim=-1)


def _brute_force_distance(attention: torch.Tensor, grid, num_prefix: int, spacing=(1.0, 1.0)) -> torch.Tensor:
    """(..., H, N, N) -> (..., H): (1/P) Σ_i Σ_j Â_ij ‖δ_ij‖ with Â the patch block renormalised per row,
    δ in units of spacing = (height, width) of a patch, by explicit loops over queries and keys."""
    rows, cols = grid
    P = rows * cols
    patches = attention[..., num_prefix:, num_prefix:].double()
    patches = patches / patches.sum(dim=-1, keepdim=True)
    out = torch.zeros(patches.shape[:-2], dtype=torch.float64)
    for i in range(P):
        ri, ci = divmod(i, cols)
        for j in range(P):
            rj, cj = divmod(j, cols)
            d = math.hypot((cj - ci) * spacing[1], (rj - ri) * spacing[0])
            out += patches[..., i, j] * d
    return out / P


# ---------------------------------------------------------------------------------------------------------------
# nonlocality / mean_attention_distance
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [5, 14])
@pytest.mark.parametrize("num_prefix", [0, 1])
def test_uniform_attention_nonlocality_is_the_closed_form(side, num_prefix):
    N = num_prefix + side * side
    attention = torch.full((2, 3, N, N), 1.0 / N)  # uniform over *all* tokens, class token included
    d = metrics.nonlocality(attention, (side, side), num_prefix=num_prefix)
    assert d.shape == (2, 3)
    expected = _uniform_mean_distance(side)
    torch.testing.assert_close(d, torch.full((2, 3), expected), rtol=1e-5, atol=1e-5)
    if side == 14:
        assert round(expected, 2) == 7.28  # methods.md §1.6
        assert d.round(decimals=2).eq(7.28).all()


def test_closed_form_helper_matches_a_pairwise_loop():
    # The counting formula itself, against a loop over all pairs of cells (guards the helper above).
    side = 5
    cells = [(r, c) for r in range(side) for c in range(side)]
    pairwise = sum(math.hypot(r1 - r2, c1 - c2) for r1, c1 in cells for r2, c2 in cells) / side**4
    assert _uniform_mean_distance(side) == pytest.approx(pairwise, rel=1e-12)


@pytest.mark.parametrize("grid", [(5, 5), (5, 7), (4, 3)])
@pytest.mark.parametrize("a,b", [(2, 1), (0, 3), (-1, -2), (1, 0)])
@pytest.mark.parametrize("num_prefix", [0, 1])
def test_one_hot_offset_attention(grid, a, b, num_prefix):
    rows, cols = grid
    P = rows * cols
    patch_attention, interior = _one_hot_offset(grid, a, b)
    assert interior.sum() == max(rows - abs(b), 0) * max(cols - abs(a), 0)
    attention = patch_attention[None, None]  # (1, 1, P, P)
    if num_prefix:
        attention = _with_prefix(attention, num_prefix)

    per_query = metrics.nonlocality(attention, grid, num_prefix=num_prefix, per_query=True)
    assert per_query.shape == (1, 1, P)
    expected = torch.where(interior, torch.tensor(math.hypot(a, b)), torch.tensor(0.0))
    torch.testing.assert_close(per_query[0, 0], expected, rtol=1e-6, atol=1e-6)

    # Border queries (distance 0) count in the mean: it is √(a²+b²) · interior / P, not √(a²+b²).
    mean = metrics.nonlocality(attention, grid, num_prefix=num_prefix)
    assert mean.shape == (1, 1)
    assert mean.item() == pytest.approx(math.hypot(a, b) * interior.sum().item() / P, rel=1e-6)


def test_nonlocality_is_per_head_and_per_image():
    grid = (4, 6)
    P = 24
    offsets = [[(1, 0), (0, 2), (-2, -1)], [(3, 1), (0, 0), (-1, 3)]]  # [image][head] = (a, b)
    attention = torch.stack([torch.stack([_one_hot_offset(grid, a, b)[0] for a, b in heads]) for heads in offsets])
    attention = _with_prefix(attention, 1)  # (2, 3, 25, 25)

    d = metrics.nonlocality(attention, grid, num_prefix=1)
    per_query = metrics.nonlocality(attention, grid, num_prefix=1, per_query=True)
    assert d.shape == (2, 3)
    assert per_query.shape == (2, 3, P)
    for img, heads in enumerate(offsets):
        for h, (a, b) in enumerate(heads):
            interior = (grid[0] - abs(b)) * (grid[1] - abs(a))
            assert d[img, h].item() == pytest.approx(math.hypot(a, b) * interior / P, rel=1e-6)
            assert torch.count_nonzero(per_query[img, h]).item() == (interior if (a, b) != (0, 0) else 0)
    torch.testing.assert_close(per_query.mean(dim=-1), d)
    # All six values differ: nothing is averaged over heads or images.
    assert len({round(v, 6) for v in d.flatten().tolist()}) == 6


@pytest.mark.parametrize("num_prefix", [0, 1, 2])
def test_nonlocality_of_random_attention_matches_a_brute_force_loop(num_prefix):
    grid = (3, 5)
    N = num_prefix + 15
    attention = _random_attention(2, 3, N, N, seed=num_prefix)
    expected = _brute_force_distance(attention, grid, num_prefix).float()
    torch.testing.assert_close(metrics.nonlocality(attention, grid, num_prefix=num_prefix), expected)


def test_nonlocality_rejects_attention_that_does_not_fit_the_grid():
    attention = _random_attention(1, 2, 17, 17)
    with pytest.raises(ValueError):
        metrics.nonlocality(attention, (4, 4), num_prefix=0)  # 17 tokens are not 0 + 16
    with pytest.raises(ValueError):
        metrics.nonlocality(attention, (4, 5), num_prefix=1)


@pytest.mark.parametrize("num_prefix", [0, 1])
def test_mean_attention_distance_square_patches_is_nonlocality_times_patch_size(num_prefix):
    grid = (4, 4)
    N = num_prefix + 16
    attention = _random_attention(2, 3, N, N, seed=3)
    pixels = metrics.mean_attention_distance(attention, grid, (16, 16), num_prefix=num_prefix)
    patches = metrics.nonlocality(attention, grid, num_prefix=num_prefix)
    assert pixels.shape == (2, 3)
    torch.testing.assert_close(pixels, patches * 16)


@pytest.mark.parametrize("num_prefix", [0, 1])
def test_mean_attention_distance_non_square_patches_matches_a_brute_force_loop(num_prefix):
    grid = (3, 4)
    patch_size = (8, 20)  # (height, width): a row step is 8 px, a column step 20 px
    N = num_prefix + 12
    attention = _random_attention(2, 2, N, N, seed=4)
    expected = _brute_force_distance(attention, grid, num_prefix, spacing=patch_size).float()
    got = metrics.mean_attention_distance(attention, grid, patch_size, num_prefix=num_prefix)
    torch.testing.assert_close(got, expected)
    # And the orientation matters: the transposed spacing gives a different answer.
    transposed = _brute_force_distance(attention, grid, num_prefix, spacing=patch_size[::-1]).float()
    assert not torch.allclose(got, transposed, rtol=1e-3)
    # One-hot one column to the right on every query that can: exactly the patch width in pixels.
    patch_attention, interior = _one_hot_offset(grid, 1, 0)
    one_hot = metrics.mean_attention_distance(patch_attention[None, None], grid, patch_size)
    assert one_hot.item() == pytest.approx(20.0 * interior.sum().item() / 12, rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# attention_map
# ---------------------------------------------------------------------------------------------------------------


def test_attention_map_cls_and_query_patch_layout():
    rows, cols = 3, 4
    num_prefix = 2
    N = num_prefix + rows * cols
    attention = _random_attention(2, 3, N, N, seed=5)

    cls_map = metrics.attention_map(attention, (rows, cols), CLS, num_prefix=num_prefix)
    assert cls_map.shape == (2, 3, rows, cols)
    for r in range(rows):
        for c in range(cols):
            assert torch.equal(cls_map[..., r, c], attention[..., 0, num_prefix + r * cols + c])

    for qr, qc in [(0, 0), (1, 2), (2, 3), (2, 0)]:
        query_map = metrics.attention_map(attention, (rows, cols), Query.at(qr, qc), num_prefix=num_prefix)
        assert query_map.shape == (2, 3, rows, cols)
        row = num_prefix + qr * cols + qc
        for r in range(rows):
            for c in range(cols):
                assert torch.equal(query_map[..., r, c], attention[..., row, num_prefix + r * cols + c])
        # Raw weights: the map sums to 1 minus the weight that query puts on the prefix tokens.
        torch.testing.assert_close(query_map.sum(dim=(-2, -1)), 1 - attention[..., row, :num_prefix].sum(-1))


def test_attention_map_without_prefix_and_errors():
    rows, cols = 2, 5
    attention = _random_attention(1, 2, 10, 10, seed=6)
    query_map = metrics.attention_map(attention, (rows, cols), Query.at(1, 3), num_prefix=0)
    assert torch.equal(query_map, attention[:, :, 8].reshape(1, 2, rows, cols))
    with pytest.raises(ValueError):
        metrics.attention_map(attention, (rows, cols), CLS, num_prefix=0)
    for outside in [(2, 0), (0, 5), (-1, 0), (0, -1)]:
        with pytest.raises(ValueError):
            metrics.attention_map(attention, (rows, cols), Query(outside), num_prefix=0)
    with pytest.raises(ValueError):
        metrics.attention_map(attention, (3, 3), Query.at(0, 0), num_prefix=0)  # 10 tokens do not fit 0 + 9


# ---------------------------------------------------------------------------------------------------------------
# attention_rollout
# ---------------------------------------------------------------------------------------------------------------


def _hat(attention: torch.Tensor) -> torch.Tensor:
    """0.5 I + 0.5 head-mean, rows renormalised, written out per image."""
    B, H, N, _ = attention.shape
    out = torch.empty(B, N, N)
    for b in range(B):
        mean = sum(attention[b, h] for h in range(H)) / H
        layer = 0.5 * torch.eye(N) + 0.5 * mean
        out[b] = layer / layer.sum(dim=1, keepdim=True)
    return out


def test_rollout_of_one_layer():
    attention = _random_attention(2, 3, 7, 7, seed=7)
    rollout = metrics.attention_rollout([attention], [1])
    torch.testing.assert_close(rollout, _hat(attention))
    # Rows that do not sum to 1 (e.g. weights with some mass removed) are renormalised after mixing.
    shrunk = attention * torch.linspace(0.3, 0.9, 7).view(1, 1, 7, 1)
    shrunk_rollout = metrics.attention_rollout([shrunk], [1])
    torch.testing.assert_close(shrunk_rollout, _hat(shrunk))
    torch.testing.assert_close(shrunk_rollout.sum(-1), torch.ones(2, 7))
    # residual_weight is the identity's share
    mean = attention.mean(dim=1)
    torch.testing.assert_close(metrics.attention_rollout([attention], [1], residual_weight=0.0), mean)
    torch.testing.assert_close(metrics.attention_rollout([attention], [1], residual_weight=1.0),
                               torch.eye(7).expand(2, 7, 7))


def test_rollout_of_two_layers_is_layer2_times_layer1():
    first = _random_attention(2, 3, 6, 6, seed=8)
    second = _random_attention(2, 3, 6, 6, seed=9)
    rollout = metrics.attention_rollout([first, second], [1, 1])
    h1, h2 = _hat(first), _hat(second)
    expected = torch.stack([h2[b] @ h1[b] for b in range(2)])
    torch.testing.assert_close(rollout, expected)
    # The order matters (the matrices do not commute), so this checks the order.
    assert not torch.allclose(rollout, torch.stack([h1[b] @ h2[b] for b in range(2)]), atol=1e-4)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 6))


def test_rollout_when_the_class_token_joins():
    P = 9
    first = _random_attention(2, 4, P, P, seed=10)  # GPSA-like: no prefix, P tokens
    second = _random_attention(2, 4, P + 1, P + 1, seed=11)  # MHSA-like: class token first
    rollout = metrics.attention_rollout([first, second], [0, 1])
    assert rollout.shape == (2, P + 1, P + 1)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, P + 1))

    r1, h2 = _hat(first), _hat(second)
    for b in range(2):
        block = torch.zeros(P + 1, P + 1)
        block[0, 0] = 1.0
        block[1:, 1:] = r1[b]
        torch.testing.assert_close(rollout[b, 0], h2[b, 0] @ block)
        torch.testing.assert_close(rollout[b], h2[b] @ block)


def test_rollout_rejects_inconsistent_token_counts():
    a = _random_attention(1, 2, 5, 5)
    b = _random_attention(1, 2, 7, 7)
    with pytest.raises(ValueError):
        metrics.attention_rollout([a, b], [0, 1])  # grows by 2 tokens but only 1 new prefix token
    with pytest.raises(ValueError):
        metrics.attention_rollout([b, a], [2, 0])  # shrinks
    with pytest.raises(ValueError):
        metrics.attention_rollout([], [])


def test_rollout_over_a_traced_convit():
    torch.manual_seed(0)
    model = create_model("convit_tiny", img_size=64).eval()
    t = trace(model, torch.randn(2, 3, 64, 64))
    assert len(t.attention) == 12
    assert t.num_prefix == [0] * 10 + [1, 1]
    rollout = metrics.attention_rollout(t.attention, t.num_prefix)
    assert rollout.shape == (2, 17, 17)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 17))
    assert (rollout >= 0).all()
    # The class token had no history before block 10: its column is fed only by the two MHSA layers.
    h10, h11 = _hat(t.attention[10]), _hat(t.attention[11])
    torch.testing.assert_close(rollout[:, :, 0], (h11 @ h10)[:, :, 0])


# ---------------------------------------------------------------------------------------------------------------
# positional_centres
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_positional_centres_of_a_fresh_nine_head_gpsa(alpha):
    torch.manual_seed(0)
    model = create_model("convit_small", img_size=80, depth=2, local_up_to_layer=1, locality_strength=alpha).eval()
    assert model.blocks[0].attn.num_heads == 9
    centres, strengths = metrics.positional_centres(model.blocks[0].attn.pos_proj.weight)
    assert centres.shape == (9, 2) and strengths.shape == (9,)
    expected = torch.tensor([[b - 1.0, a - 1.0] for b in range(3) for a in range(3)])  # row p = a + 3b
    for a in range(3):
        for b in range(3):
            assert centres[a + 3 * b].tolist() == [b - 1.0, a - 1.0]
    torch.testing.assert_close(centres, expected)
    torch.testing.assert_close(strengths, torch.full((9,), alpha))

    # The centres are where the positional attention really peaks: query at the middle of the 5×5 grid.
    t = trace(model, torch.randn(1, 3, 80, 80))
    positional = t.positional[0][0]  # (9, 25, 25)
    query = 2 * 5 + 2
    for head in range(9):
        key = positional[head, query].argmax().item()
        kr, kc = divmod(key, 5)
        assert (kc - 2, kr - 2) == tuple(int(v) for v in centres[head].tolist())


def test_positional_centres_of_convit_tiny_and_their_locality():
    torch.manual_seed(0)
    model = create_model("convit_tiny", depth=1, local_up_to_layer=1).eval()
    centres, strengths = metrics.positional_centres(model.blocks[0].attn.pos_proj.weight)
    expected = torch.tensor([[b - 0.5, a - 0.5] for b in range(2) for a in range(2)])  # p = a + 2b
    torch.testing.assert_close(centres, expected)
    assert set(map(tuple, centres.abs().tolist())) == {(0.5, 0.5)}
    torch.testing.assert_close(strengths, torch.ones(4))
    # methods.md §1.3: pure-positional D_loc of a Ti head on the 14×14 grid is 0.99 patches.
    t = trace(model, torch.randn(1, 3, 224, 224))
    d = metrics.nonlocality(t.positional[0], t.grid)
    torch.testing.assert_close(d, torch.full((1, 4), 0.99), atol=0.006, rtol=0)


def test_positional_centres_from_hand_written_weights():
    weight = torch.tensor([
        [2.0, -4.0, -1.0],  # α = 1, centre (1, -2)
        [3.0, 1.5, -0.5],  # α = 0.5, centre (3, 1.5)
        [1.0, 1.0, 0.0],  # w_d = 0: no centre
        [1.0, -1.0, 2.0],  # w_d > 0: a trough, no centre
    ])
    centres, strengths = metrics.positional_centres(weight)
    torch.testing.assert_close(strengths, torch.tensor([1.0, 0.5, 0.0, -2.0]))
    torch.testing.assert_close(centres[:2], torch.tensor([[1.0, -2.0], [3.0, 1.5]]))
    assert torch.isnan(centres[2:]).all()
    assert not torch.isnan(centres[:2]).any()
    # Completing the square: w·(dx, dy, d²) = -α‖δ - Δ‖² + α‖Δ‖² for every offset δ.
    for h in range(2):
        for dx, dy in [(0, 0), (1, -3), (-2, 2), (4, 1)]:
            logit = weight[h, 0] * dx + weight[h, 1] * dy + weight[h, 2] * (dx * dx + dy * dy)
            alpha, (cx, cy) = strengths[h], centres[h]
            completed = -alpha * ((dx - cx) ** 2 + (dy - cy) ** 2) + alpha * (cx**2 + cy**2)
            assert logit.item() == pytest.approx(completed.item(), abs=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# bypass_maps (and the captured bypass itself)
# ---------------------------------------------------------------------------------------------------------------


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _manual_bypass(adapter, z: torch.Tensor, grid, num_prefix: int, scale: float):
    """methods.md §2.1 written out: returns (scaled update (B, N, D), conv output (B, h, rows, cols))."""
    rows, cols = grid
    u = _quick_gelu(z @ adapter.adapter_down.weight.T + adapter.adapter_down.bias)  # (B, N, h)
    B, _, h = u.shape
    weight, bias = adapter.adapter_conv.weight, adapter.adapter_conv.bias  # (h, h, 3, 3), (h,)
    grid_map = torch.zeros(B, h, rows + 2, cols + 2)  # zero padding by hand
    for n in range(rows * cols):
        r, c = divmod(n, cols)
        grid_map[:, :, r + 1, c + 1] = u[:, num_prefix + n]
    conv = bias.view(1, h, 1, 1).expand(B, h, rows, cols).clone()
    for ky in range(3):
        for kx in range(3):
            window = grid_map[:, :, ky:ky + rows, kx:kx + cols]
            conv = conv + torch.einsum("oi,bihw->bohw", weight[:, :, ky, kx], window)
    prefix = u[:, :num_prefix] @ weight[:, :, 1, 1].T + bias  # a 1×1 map sees only the centre tap
    mixed = torch.cat((prefix, conv.flatten(2).transpose(1, 2)), dim=1)
    update = _quick_gelu(mixed) @ adapter.adapter_up.weight.T + adapter.adapter_up.bias
    return update * scale, conv


def _adapted_vit(num_prefix: int, where: str = "both", scale: float = 3.0, seed: int = 0):
    """A small Convpass ViT (grid 3×4) with every bypass parameter random and nonzero, in eval mode."""
    kwargs = {"img_size": (48, 64), "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2,
              "num_classes": 5}
    if num_prefix == 0:
        kwargs.update(class_token=False, global_pool="avg")
    elif num_prefix > 1:
        kwargs.update(reg_tokens=num_prefix - 1)
    torch.manual_seed(seed)
    model = create_model("vit_tiny_patch16_224", **kwargs)
    add_convpass(model, dim=4, scale=scale, where=where, conv_init="xavier")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adapter_" in name:
                param.copy_(torch.randn_like(param) * 0.3)
    assert model.num_prefix_tokens == num_prefix
    return model.eval()


@pytest.mark.parametrize("num_prefix", [0, 1, 3])
def test_captured_bypass_is_the_convpass_formula(num_prefix):
    scale = 3.0
    model = _adapted_vit(num_prefix, scale=scale)
    grid = (3, 4)
    inputs = {}
    handles = [block.register_forward_pre_hook(lambda mod, args, i=i: inputs.__setitem__(i, args[0].detach()))
               for i, block in enumerate(model.blocks)]
    try:
        t = trace(model, torch.randn(2, 3, 48, 64))
    finally:
        for handle in handles:
            handle.remove()
    assert t.grid == grid
    for i, block in enumerate(model.blocks):
        x = inputs[i]
        with torch.no_grad():
            z1 = block.norm1(x)
            expected_attn, expected_conv = _manual_bypass(block.adapter_attn, z1, grid, num_prefix, scale)
            attn_main = block.attn(z1)
            x_mid = x + attn_main + expected_attn
            z2 = block.norm2(x_mid)
            expected_mlp, expected_mlp_conv = _manual_bypass(block.adapter_mlp, z2, grid, num_prefix, scale)
        captured = t.bypass[i]
        assert set(captured) == {"attn", "mlp"}
        torch.testing.assert_close(captured["attn"].output, expected_attn, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(captured["attn"].conv, expected_conv, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(captured["attn"].main, attn_main, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(captured["mlp"].output, expected_mlp, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(captured["mlp"].conv, expected_mlp_conv, rtol=1e-4, atol=1e-5)
        assert captured["attn"].output.abs().max() > 1e-2  # the check is not vacuous


def test_bypass_maps_norms_ratios_and_conv():
    num_prefix = 1
    model = _adapted_vit(num_prefix, where="both")
    t = trace(model, torch.randn(2, 3, 48, 64))
    rows, cols = t.grid
    for i in range(len(model.blocks)):
        bypass = t.bypass[i]
        maps = metrics.bypass_maps(bypass, t.grid, num_prefix)
        assert set(maps) == {"attn", "mlp"}
        for branch in ("attn", "mlp"):
            norm, ratio, conv = maps[branch].norm, maps[branch].ratio, maps[branch].conv
            assert norm.shape == (2, rows, cols) and ratio.shape == (2, rows, cols)
            assert conv.shape == (2, 4, rows, cols)
            assert torch.equal(conv, bypass[branch].conv)
            for b in range(2):
                for r in range(rows):
                    for c in range(cols):
                        token = num_prefix + r * cols + c
                        update = bypass[branch].output[b, token]
                        main = bypass[branch].main[b, token]
                        assert norm[b, r, c].item() == pytest.approx(update.norm().item(), rel=1e-5)
                        assert ratio[b, r, c].item() == pytest.approx((update.norm() / main.norm()).item(), rel=1e-5)


def test_bypass_maps_attn_only():
    model = _adapted_vit(1, where="attn")
    t = trace(model, torch.randn(1, 3, 48, 64))
    assert set(t.bypass[0]) == {"attn"}
    maps = metrics.bypass_maps(t.bypass[0], t.grid, 1)
    assert set(maps) == {"attn"}
    expected = t.bypass[0]["attn"].output[:, 1:].norm(dim=-1).reshape(1, 3, 4)
    torch.testing.assert_close(maps["attn"].norm, expected)
    moved = t.to("meta").bypass[0]["attn"]  # Trace.to moves the captures too
    assert {moved.output.device.type, moved.main.device.type, moved.conv.device.type} == {"meta"}
