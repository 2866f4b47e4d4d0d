"""The guided path ("Start here"): ordered steps for a lecture or self-study, each opening a view (model, example,
tab, block, query, step) and saying what to notice there, with the numbers of the loaded models filled in when the
step is shown (never typed into the text: they would go stale when the models are retrained)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.links import ViewLink
from app.service import Service, training_pair
from petl_core import catalog
from petl_core.cards import ModelCard
from petl_core.catalog import PROBE_IMAGES
from petl_core.curves import GATE_AT_INIT as INIT_GATE
from petl_core.curves import TrainingCurves

__all__ = ["STEPS", "GuideStep", "guide_text"]

CONVIT, DEIT, CONVPASS = "convit_scenes_gpsa50", "deit_scenes", "convpass_digit_scenes"
SCENE, DIGIT_SCENE = "scene_t-shirt-top.png", "digit_scene_0.png"


@dataclass(frozen=True)
class GuideStep:
    title: str
    view: ViewLink
    notice: Callable[[Service], str]
    """What to notice, as Markdown, with the numbers read from the models `service` loads."""


def _card(name: str) -> ModelCard:
    return ModelCard.load(catalog.ASSETS / name)


def _input(service: Service) -> str:
    card, kwargs = _card(CONVIT), _card(CONVIT).architecture["kwargs"]
    side, patch = kwargs["img_size"], kwargs["patch_size"]
    gpsa = kwargs.get("local_up_to_layer", 0)
    return (f"`{CONVIT}` sees a {side}×{side} grayscale image (white on dark) cut into a {side // patch}×"
            f"{side // patch} grid of {patch}×{patch}-pixel patches: every map below has one cell per patch. It has "
            f"{kwargs['depth']} blocks of {kwargs['num_heads']} heads; blocks 0-{gpsa - 1} are GPSA (gated positional "
            f"self-attention), the rest plain self-attention. It scores {card.accuracy['test']:.1%} on its "
            f"{card.accuracy['test_images']:,} test scenes. **Notice** in the grid how the heads of block 0 each "
            f"look at one fixed offset around the query patch (framed), whatever the image: a convolution spread "
            f"over heads. Click another patch of *what the model saw*: the pattern moves with it.")


def _gpsa(service: Service) -> str:
    blocks, gates = service.checkpoint_gates(CONVIT)
    lines = ", ".join(f"block {b}: {g.min():.2f}-{g.max():.2f}" for b, g in zip(blocks, gates, strict=True))
    return ("Each GPSA head mixes a content map softmax(QKᵀ/√d) (what the patches contain) with a positional map "
            "softmax(v_pos·r) (where they are), weighted by its gate σ(λ): 1 is purely positional, 0 purely "
            f"content. Training started every gate at σ(1) = {INIT_GATE:.2f}; `{CONVIT}` ended with σ in "
            f"{lines}. **Notice** which heads kept a sharp positional map, and that the mixed map is exactly "
            "(1-σ)·content + σ·position.")


def _equation(service: Service) -> str:
    blocks, gates = service.checkpoint_gates(CONVIT)
    block, head = np.unravel_index(int(np.argmax(gates)), gates.shape)
    top = float(gates[block, head])
    return ("The formula of one head, with this image's numbers: σ(λ_h) of the head, and the content and positional "
            "weight of the keys the query attends to most, each linked to its place on the maps. **Notice** which "
            f"term carries each key's weight. The most positional head of `{CONVIT}` (block {blocks[block]}, head "
            f"{head}) has σ = {top:.3f}: it takes {1 - top:.1%} of every weight from the content.")


def _dial(service: Service) -> str:
    card = _card(CONVIT)
    return (f"`{CONVIT}` as trained scores {card.accuracy['test']:.1%} on its {card.accuracy['test_images']:,} test "
            f"scenes; the dial scores the first {PROBE_IMAGES} of them (its probe), so its accuracy as trained "
            "differs from that by the sample (a few points). Set the gates yourself: choose *all content (σ = 0): "
            "a ViT*, then *all positional (σ = 1)*, and read the probe accuracy under the maps. **Notice** how much "
            "the trained model relies on each kind of attention; then, *by hand*, which single block's positional "
            "prior costs the most when its gates go to 0.")


def _replay(service: Service) -> str:
    steps = service.snapshot_steps(CONVIT)
    return (f"The same image through {len(steps)} snapshots of training (steps {steps[0]}-{steps[-1]:,}), ConViT next "
            f"to DeiT. At step 0 every ConViT gate is σ(1) = {INIT_GATE:.2f} and the positional centres sit on the "
            "offsets around the query: the convolutional initialisation; the DeiT has no such prior. Press **Play**. "
            "**Notice** whether the gates close, how far the centres move, and when each model's top-5 settles.")


def _nonlocality(service: Service) -> str:
    pair = training_pair(CONVIT)
    parts = []
    for label, key in (("ConViT", "convit"), ("DeiT", "deit")):
        history = service.history(pair[key]) if key in pair else None
        if history is None:
            continue
        curves = TrainingCurves.of(history)
        first, last = curves.nonlocality[0], curves.nonlocality[-1]
        parts.append(f"{label} `{pair[key]}`: layer 0 from {first[0]:.2f} to {last[0]:.2f} patches, last layer from "
                     f"{first[-1]:.2f} to {last[-1]:.2f} (step {int(curves.steps[0])} to {int(curves.steps[-1]):,})")
    return ("Nonlocality is how far a head looks: the attention-weighted distance from query to keys, in patches. "
            f"Measured during training: {'; '.join(parts)}. **Notice** that the ConViT's early layers start local "
            "and the DeiT's near uniform: the inductive bias is a starting point, which training may keep or leave.")


def _atlas(service: Service) -> str:
    return ("The nonlocality of every head on each of the probe's test images, ConViT next to DeiT: a distribution "
            "per layer, not one average. **Notice** how wide each block's spread is from image to image (a head "
            "that looks by position alone would not spread at all), and click a point far from its layer's median "
            "to load that image and see what made the head look so far, or so near.")


def _convpass(service: Service) -> str:
    card = _card(CONVPASS)
    trainable, total = card.parameters["trainable"], card.parameters["total"]
    return (f"Convpass is a hard convolutional bias: a frozen ViT with small 3×3-convolution bypasses beside its "
            f"attention and MLP. In `{CONVPASS}` they and the head are {trainable:,} of {total:,} parameters "
            f"({trainable / total:.1%}); its test accuracy is {card.accuracy['test']:.1%}. **Notice** where on the "
            "digit scene the bypasses write the most (‖s·bypass‖, and its ratio to the frozen branch beside it), "
            "against the texture around it.")


STEPS: tuple[GuideStep, ...] = (
    GuideStep("What the model sees", ViewLink(model=CONVIT, example=SCENE, tab="attention", block=0, head=0,
                                              query="center"), _input),
    GuideStep("Content vs position", ViewLink(model=CONVIT, example=SCENE, tab="gpsa", block=0, query="center"),
              _gpsa),
    GuideStep("The equation in numbers", ViewLink(model=CONVIT, example=SCENE, tab="equation", block=0, head=0,
                                                  query="center"), _equation),
    GuideStep("Turn the dial", ViewLink(model=CONVIT, example=SCENE, tab="dial", query="center"), _dial),
    GuideStep("Through training", ViewLink(model=CONVIT, example=SCENE, tab="replay", step=0, query="center"),
              _replay),
    GuideStep("ConViT vs DeiT over training", ViewLink(model=CONVIT, example=SCENE, tab="nonlocality"),
              _nonlocality),
    GuideStep("A locality atlas", ViewLink(model=CONVIT, tab="atlas"), _atlas),
    GuideStep("A hard bias: Convpass", ViewLink(model=CONVPASS, example=DIGIT_SCENE, tab="bypass", block=0,
                                                query="center"), _convpass),
)


def guide_text(service: Service, step: int) -> str:
    """The Markdown of guide step `step` (1-based): its title, its place in the path and what to notice."""
    current = STEPS[step - 1]
    return f"**Step {step} of {len(STEPS)}: {current.title}.** {current.notice(service)}"
