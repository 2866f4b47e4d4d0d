"""The guided path ("Start here"): ordered steps for a lecture or self-study, each opening a view (model, example,
tab, block, query, step), saying what to notice there and what to conclude, with one question for a class, the
numbers of the loaded models filled in when the step is shown (never typed into the text: they would go stale when
the models are retrained). `lecturer_sheet` prints the whole path on one page with the same numbers."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.links import ViewLink, example_path
from app.service import Service, parse_query, training_pair
from petl_core import catalog
from petl_core.cards import ModelCard
from petl_core.catalog import PROBE_IMAGES
from petl_core.curves import GATE_AT_INIT as INIT_GATE
from petl_core.curves import TrainingCurves

__all__ = ["STEPS", "GuideStep", "guide_text", "lecturer_sheet"]

CONVIT, DEIT, CONVPASS = "convit_scenes_gpsa50", "deit_scenes", "convpass_digit_scenes"
SCENE, DIGIT_SCENE = "scene_t-shirt-top.png", "digit_scene_0.png"


@dataclass(frozen=True)
class GuideStep:
    title: str
    view: ViewLink
    notice: Callable[[Service], str]
    """What to notice, as Markdown, with the numbers read from the models `service` loads."""
    conclude: Callable[[Service], str]
    """What to conclude, one or two sentences computed from the numbers the step's view shows."""
    question: str
    """One question for a class to discuss."""


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


def _analysed(service: Service, model: str, example: str):
    """The guide's `example` through `model`, as the step's view shows it (the page's default inversion)."""
    return service.result_for(example_path(example), model)


def _conclude_input(service: Service) -> str:
    from petl_core.metrics import uniform_nonlocality

    result = _analysed(service, CONVIT, SCENE)
    first, last = (float(result.analysis.nonlocality[b][0].mean()) for b in (0, -1))
    uniform = uniform_nonlocality(result.trace.grid)
    return (f"On this scene block 0's heads look {first:.1f} patches from the query on average, the last block's "
            f"{last:.1f} (attention spread evenly would be {uniform:.1f}): the first block is "
            f"{'more' if first < last else 'less'} local than the last, as a convolution's first layer is.")


def _conclude_gpsa(service: Service) -> str:
    blocks, gates = service.checkpoint_gates(CONVIT)
    above = int((gates > INIT_GATE).sum())
    means = gates.mean(axis=1)
    most, least = int(np.argmax(means)), int(np.argmin(means))
    return (f"Of its {gates.size} GPSA heads, {above} ended more positional than at init (σ > {INIT_GATE:.2f}) and "
            f"{gates.size - above} more content-based; block {blocks[most]} is the most positional on average "
            f"(mean σ {means[most]:.2f}), block {blocks[least]} the least ({means[least]:.2f}): training kept the "
            "prior in some heads and let it go in others.")


def _conclude_equation(service: Service) -> str:
    from petl_core.equation import gpsa_equation

    trace = _analysed(service, CONVIT, SCENE).trace
    eq = gpsa_equation(trace, 0, 0, parse_query("center", trace.grid))
    key = eq.top[0]
    position, content = eq.sigma * key.positional, (1 - eq.sigma) * key.content
    return (f"For the centre patch, block 0 head 0 (σ = {eq.sigma:.3f}) gives its strongest key {key.attention:.3f}: "
            f"{position:.3f} from position and {content:.3f} from content, so "
            f"{'position' if position > content else 'content'} decides where this head looks.")


def _conclude_dial(service: Service) -> str:
    from app.tabs.dial import PRESETS, DialView

    view = DialView(service)
    scores = [service.known_probe_accuracy(CONVIT, view.preset_gates(CONVIT, preset)) for preset in PRESETS[:3]]
    if None in scores:
        return ("The dial scores each preset's probe accuracy as you choose it: compare the three, and how far each "
                "falls from the model as trained.")
    trained, positional, content = scores
    said = (f"On the first {PROBE_IMAGES} test scenes: as trained {trained:.1%}, all positional {positional:.1%}, "
            f"all content {content:.1%}.")
    if trained > max(positional, content):
        return (f"{said} The model does best with the mix it learned: setting every gate to one kind costs "
                f"{100 * (trained - max(positional, content)):.1f} points or more.")
    return f"{said} One kind of attention alone does as well as the learned mix here."


def _conclude_replay(service: Service) -> str:
    pair = training_pair(CONVIT)
    convit = TrainingCurves.of(service.history(CONVIT))
    moved = np.abs(convit.gates[-1] - convit.gates[0]).mean(axis=1)
    block = int(np.argmax(moved))
    start, end = convit.gates[0][block].mean(), convit.gates[-1][block].mean()
    accuracy = {key: service.history(name)["entries"][-1]["test_accuracy"] for key, name in pair.items()}
    return (f"Over {int(convit.steps[-1]):,} steps the gates of block {block} moved most (mean σ {start:.2f} → "
            f"{end:.2f}); the ConViT ended at {accuracy['convit']:.1%} on its test scenes, the DeiT at "
            f"{accuracy['deit']:.1%}, trained alike for as long.")


def _conclude_nonlocality(service: Service) -> str:
    from petl_core.metrics import uniform_nonlocality

    pair = training_pair(CONVIT)
    convit, deit = (TrainingCurves.of(service.history(pair[key])) for key in ("convit", "deit"))
    uniform = uniform_nonlocality(_analysed(service, CONVIT, SCENE).trace.grid)
    deit_end = deit.nonlocality[-1][0]
    return (f"The ConViT's first layer went {convit.nonlocality[0][0]:.2f} → {convit.nonlocality[-1][0]:.2f} patches, "
            f"the DeiT's {deit.nonlocality[0][0]:.2f} → {deit_end:.2f} (uniform attention: {uniform:.2f}): "
            + ("the DeiT stays near uniform, unlike the ViT of the paper's Fig. 5, whose early layers became local; "
               "ours is small and trained briefly." if deit_end > 0.8 * uniform else
               "the DeiT's first layer became local without any prior, as in the paper's Fig. 5."))


def _conclude_atlas(service: Service) -> str:
    atlas, _ = service.atlas(CONVIT)
    values = atlas.nonlocality.mean(dim=2)  # (images, blocks): each image's mean over heads
    spread = (values.quantile(0.75, dim=0) - values.quantile(0.25, dim=0)).numpy()
    widest = int(np.argmax(spread))
    said = (f"Across the {values.shape[0]} probe scenes, the middle half of each block's nonlocality spans at most "
            f"{spread[widest]:.2f} patches (block {widest})")
    if spread[widest] < 0.25:
        return f"{said}: these heads look about as far whatever the image, as a fixed prior would."
    return f"{said}: there the image changes how far the heads look; in the other blocks less."


def _conclude_convpass(service: Service) -> str:
    means = _analysed(service, CONVPASS, DIGIT_SCENE).analysis.summary()["bypass_mean_per_block"]
    ratios = {(block, key.removesuffix("_ratio")): value for block, entry in means.items()
              for key, value in entry.items() if key.endswith("_ratio")}
    top, low = max(ratios, key=ratios.get), min(ratios, key=ratios.get)
    return (f"On this digit scene the bypasses write most beside block {top[0]}'s {top[1]} "
            f"({ratios[top]:.2f}× the frozen branch) and least beside block {low[0]}'s {low[1]} ({ratios[low]:.2f}×): "
            "the convolutional bias is added where the frozen model needs it, not everywhere alike.")


STEPS: tuple[GuideStep, ...] = (
    GuideStep("What the model sees", ViewLink(model=CONVIT, example=SCENE, tab="attention", block=0, head=0,
                                              query="center"), _input, _conclude_input,
              "Block 0 has as many heads as a 3×3 convolution has taps. What does a head gain, and lose, by being "
              "able to look by content as well as by position?"),
    GuideStep("Content vs position", ViewLink(model=CONVIT, example=SCENE, tab="gpsa", block=0, query="center"),
              _gpsa, _conclude_gpsa,
              "Why might a model keep its positional prior in some heads and drop it in others of the same block?"),
    GuideStep("The equation in numbers", ViewLink(model=CONVIT, example=SCENE, tab="equation", block=0, head=0,
                                                  query="center"), _equation, _conclude_equation,
              "If this head's σ were 0.5, would its strongest key change? Check with the dial."),
    GuideStep("Turn the dial", ViewLink(model=CONVIT, example=SCENE, tab="dial", query="center"), _dial,
              _conclude_dial,
              "A trained ConViT loses accuracy with its gates all at 1 and all at 0. What does that say about what "
              "a soft inductive bias learns?"),
    GuideStep("Through training", ViewLink(model=CONVIT, example=SCENE, tab="replay", step=0, query="center"),
              _replay, _conclude_replay,
              "At which step does each model's answer on this image settle, and what does the prior buy early on?"),
    GuideStep("ConViT vs DeiT over training", ViewLink(model=CONVIT, example=SCENE, tab="nonlocality"),
              _nonlocality, _conclude_nonlocality,
              "What about our data, image size or training length could keep a DeiT from becoming local as the "
              "paper's did?"),
    GuideStep("A locality atlas", ViewLink(model=CONVIT, tab="atlas"), _atlas, _conclude_atlas,
              "Which images make a head look far, and why would a positional head not care about the image at all?"),
    GuideStep("A hard bias: Convpass", ViewLink(model=CONVPASS, example=DIGIT_SCENE, tab="bypass", block=0,
                                                query="center"), _convpass, _conclude_convpass,
              "A hard bias is fixed by design, a soft one learned. When would you choose each?"),
)


def guide_text(service: Service, step: int) -> str:
    """The Markdown of guide step `step` (1-based): its title, its place in the path, what to notice, what to
    conclude and a question for a class."""
    current = STEPS[step - 1]
    return (f"**Step {step} of {len(STEPS)}: {current.title}.** {current.notice(service)}\n\n"
            f"**Conclude.** {current.conclude(service)}\n\n**Discuss.** {current.question}")


def lecturer_sheet(service: Service) -> str:
    """The whole path on one page (Markdown) for a lecturer: each step's view (as a link's query string), what to
    notice, what to conclude and the question, with the numbers of the loaded models."""
    lines = ["# Inductive Bias Explorer: the guided path", "",
             f"{len(STEPS)} steps, each a view of the app (open it with the link's query string after the app's "
             "address). The numbers are those of the shipped models as loaded when this sheet was made.", ""]
    for number, step in enumerate(STEPS, 1):
        lines += [f"## {number}. {step.title}", "", f"View: `{step.view.query_string()}`", "",
                  step.notice(service), "", f"**Conclude.** {step.conclude(service)}", "",
                  f"**Discuss.** {step.question}", ""]
    return "\n".join(lines)
