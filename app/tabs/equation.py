"""The equation in numbers: GPSA's mix (or Convpass's update) for the page's query, with this image's values put in,
each term linked to its map."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from app import plots
from app.answers import by_image_and_inputs, shares
from app.queue_policy import drawn
from app.service import Result, Service, parse_index, parse_query
from app.tabs.common import EACH_CHANGE, PRIVATE, Shared, learn, numbers_panel, plot, wire_page, wire_view
from app.tabs.gpsa import GpsaView
from petl_core.query import centre_patch
from petl_core.scales import ATTENTION_LOG_RANGE, attention_colour_label

if TYPE_CHECKING:
    from petl_core.equation import ConvpassEquation, GpsaEquation

EQUATION_JS = (Path(__file__).with_name("equation.js")).read_text()
"""Computes and draws a ConViT's equation in the page (installed at page load) from `GpsaView.data`."""

LEARN = """
**GPSA.** For a query patch i, a head's attention to each key patch j mixes two rows that each sum to 1:
A_ij = (1 − σ(λ))·C_ij + σ(λ)·P_ij. C, the *content* attention softmax(q_i·k_j/√d), depends on what the patches
show; P, the *positional* attention softmax(v_pos·r_ij), only on where j sits relative to i. The table puts this
image's numbers into the formula for the keys the head weighs most (numbered as on the maps), and the sum over all
other keys; each row adds up exactly. Compare the two coloured columns: which one makes the key win?

**Convpass.** Each block updates the residual stream x twice, beside attention and beside the MLP:
x ← x + main(LN x) + s·bypass(LN x), where main is the frozen ViT's branch and bypass the small trained 3×3
convolution path, multiplied by the scale s. The lengths of these vectors for the query token show how much each
part writes; the *bypass share* ‖s·bypass‖ / (‖main‖ + ‖s·bypass‖) is 0 when only the frozen branch writes and 1
when only the bypass does. The maps show the share for every patch.
"""
TERM_COLOURS = {"content": "#1f77b4", "positional": "#d62728", "attention": "#9467bd", "main": "#1f77b4",
                "bypass": "#2ca02c"}
"""One colour per term, the same in the formula and on the map titles."""


def _coloured(text: str, term: str) -> str:
    return f'<span style="color:{TERM_COLOURS[term]}">{text}</span>'


def _badge(number: int) -> str:
    """Key `number` (from 1) as on the maps: white on its marker's colour."""
    from petl_core.figures import KEY_COLOURS

    colour = KEY_COLOURS[(number - 1) % len(KEY_COLOURS)]
    return (f'<span style="background:{colour};color:white;border-radius:9px;padding:0 6px;font-weight:bold">'
            f'{number}</span>')


def _gpsa_view(result: Result, eq: GpsaEquation, note: str) -> tuple:
    """Figure, Markdown and numbers of one GPSA head's mix."""
    from petl_core.figures import marked_maps_figure

    s, keys = eq.sigma, eq.top
    row, col = eq.query.patch
    names = {"content": f"content C (× 1 − σ = {1 - s:.4f})", "positional": f"positional P (× σ = {s:.4f})",
             "attention": "mixed A = (1 − σ)·C + σ·P"}
    figure = marked_maps_figure(
        {names[n]: getattr(eq, n) for n in names}, result.input_image, result.analysis.patch_size, eq.query,
        attention_colour_label(True), f"block {eq.block}, head {eq.head}: attention of the {eq.query.label}",
        log_scale=True, limits=ATTENTION_LOG_RANGE,  # (the attention views' fixed range: maps compare across views)
        keys=[k.patch for k in keys], title_colours={names[n]: TERM_COLOURS[n] for n in names})
    c, p, a = (_coloured(t, n) for t, n in (("C", "content"), ("P", "positional"), ("A", "attention")))
    lines = [note,
             f"**GPSA block {eq.block}, head {eq.head}, {eq.query.label}.** A = (1 − σ)·{c} + σ·{p}, with this "
             f"head's gate σ = σ(λ) = **{s:.4f}** (so 1 − σ = {1 - s:.4f}).", "",
             f"| key | patch (row, col) | offset (dx, dy) | (1 − σ) · {c} | + σ · {p} | = {a} |",
             "|:-:|:-:|:-:|--:|--:|--:|"]

    def cells(w) -> str:
        return (f"{1 - s:.4f} × {_coloured(f'{w.content:.4f}', 'content')} | + {s:.4f} × "
                f"{_coloured(f'{w.positional:.4f}', 'positional')} | = "
                f"**{_coloured(f'{w.attention:.4f}', 'attention')}**")

    for number, k in enumerate(keys, start=1):
        lines.append(f"| {_badge(number)} | ({k.patch[0]}, {k.patch[1]}) | ({k.patch[1] - col:+d}, "
                     f"{k.patch[0] - row:+d}) | {cells(k)} |")
    num_keys = eq.attention.numel()
    lines.append(f"| other {num_keys - len(keys)} keys, summed | | | {cells(eq.rest)} |")
    first = keys[0]
    from_content, from_position = (1 - s) * first.content, s * first.positional
    winner = "position" if from_position > from_content else "content"
    lines += ["", f"Key {_badge(1)} gets {first.attention:.4f}: {from_content:.4f} from "
              f"{_coloured('content', 'content')} and {from_position:.4f} from "
              f"{_coloured('position', 'positional')}: most of its weight comes from {winner}. Every row adds up: "
              f"the formula gives the attention the block applied to within {eq.identity_error:.1e} (float "
              f"rounding)."]
    numbers = {"kind": "gpsa", "block": eq.block, "head": eq.head, "query": eq.query.text, "sigma": s,
               "top": [{"number": n, "key": k.key, "patch": list(k.patch),
                        "offset_dx_dy": [k.patch[1] - col, k.patch[0] - row], "content": k.content,
                        "positional": k.positional, "attention": k.attention, "formula": k.mix(s)}
                       for n, k in enumerate(keys, start=1)],
               "rest": {"keys": num_keys - len(keys), "content": eq.rest.content, "positional": eq.rest.positional,
                        "attention": eq.rest.attention, "formula": eq.rest.mix(s)},
               "identity_error": eq.identity_error}
    return figure, "\n".join(lines), numbers


def _convpass_view(result: Result, eq: ConvpassEquation) -> tuple:
    """Figure, Markdown and numbers of one Convpass block's update."""
    from petl_core.figures import marked_maps_figure

    where = {"attn": "beside attention", "mlp": "beside the MLP"}
    off_grid = " (the class token is not on the patch grid: its shares are in the table)" if eq.query.is_cls else ""
    figure = marked_maps_figure({f"{b.branch} bypass share, {where[b.branch]}": b.share_map for b in eq.branches},
                                result.input_image, result.analysis.patch_size, eq.query, "bypass share",
                                f"block {eq.block}: bypass share ‖s·bypass‖ / (‖main‖ + ‖s·bypass‖) per patch"
                                f"{off_grid}", limits=(0.0, 1.0),
                                cmap="viridis")
    main, bypass = _coloured("main", "main"), _coloured("s·bypass", "bypass")
    width = eq.branches[0].stream.numel()
    lines = [f"**Convpass block {eq.block}, {eq.query.label}.** Each branch updates the residual stream: "
             f"x ← x + {main}(LN x) + {bypass}(LN x), with this model's scale s = **{eq.scale:g}**. The lengths "
             f"of these {width}-dimensional vectors:", "",
             f"| branch | ‖x‖ | ‖{main}‖ | ‖{bypass}‖ = s × ‖bypass‖ | ‖x + {main} + {bypass}‖ | bypass share |",
             "|:-:|--:|--:|--:|--:|--:|"]
    numbers = {"kind": "convpass", "block": eq.block, "query": eq.query.text, "scale": eq.scale, "branches": {}}
    for b in eq.branches:
        norms = {"stream": b.stream.norm().item(), "main": b.main.norm().item(), "bypass": b.bypass.norm().item(),
                 "output": b.output.norm().item()}
        main_norm, bypass_norm = (_coloured(f"{norms[n]:.4f}", n) for n in ("main", "bypass"))
        lines.append(f"| {b.branch} ({where[b.branch]}) | {norms['stream']:.4f} | {main_norm} | {bypass_norm} = "
                     f"{eq.scale:g} × {norms['bypass'] / eq.scale:.4f} | {norms['output']:.4f} | **{b.share:.4f}** |")
        numbers["branches"][b.branch] = {**{f"{k}_norm": v for k, v in norms.items()}, "share": b.share,
                                         "share_map": b.share_map.numpy().round(5).tolist()}
    lines += ["", "bypass share = ‖s·bypass‖ / (‖main‖ + ‖s·bypass‖): 0 when only the frozen branch writes, 1 when "
              "only the bypass does. The MLP branch starts from the stream the attention branch left."]
    return figure, "\n".join(lines), numbers


class EquationView:
    """The /equation endpoint, drawn from the analyses of `service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def fit(self, image: str | None, model: str, weights: str | None, block: str | float, head: float,
            invert: bool = True) -> tuple:
        """The block choices (GPSA blocks, or blocks with a bypass) and the head range of the analysed model."""
        if not image:
            return gr.skip(), gr.skip()
        trace = self.service.result_for(image, model, weights, invert=invert).trace
        blocks = trace.gated_blocks or [i for i, entry in enumerate(trace.bypass) if entry]
        heads = max(a.shape[1] for a in trace.attention)
        kept = str(block) in {str(b) for b in blocks}
        value = block if kept else (blocks[0] if blocks else None)
        # ("hidden", not False: Gradio 6.31 walks the whole page to load a component that is not rendered whenever
        # an update reaches it, and the views update these after each analysis)
        return (gr.Dropdown(choices=blocks, value=value, visible=True if blocks else "hidden"),
                gr.Slider(maximum=heads - 1, value=min(int(head), heads - 1),
                          visible=True if trace.gated_blocks else "hidden"))

    @shares(by_image_and_inputs)
    @drawn
    def render(self, image: str | None, model: str, query: str, block: str | float, head: str | float,
               weights: str | None = None, invert: bool = True, progress: gr.Progress = gr.Progress()) -> tuple:
        """For `query` ('cls', 'center' or 'row,col'), block `block` and head `head` (ConViT: a GPSA block; Convpass:
        a block with a bypass, `head` unused): the maps with the top keys numbered (figure), the formula with this
        image's numbers (Markdown) and the numbers (JSON)."""
        from petl_core.equation import convpass_equation, gpsa_equation

        result = self.service.result_for(image, model, weights, progress, invert)
        trace = result.trace
        q = parse_query(query, trace.grid)
        if trace.gated_blocks:
            b = parse_index(block, "GPSA block", trace.gated_blocks, optional=True)
            h = parse_index(head, "head", list(range(trace.attention[b].shape[1])))
            note = ""
            if q.is_cls:  # GPSA blocks come before the class token joins
                q = centre_patch(trace.grid)
                note = (f"The class token joins after the GPSA blocks, so it has no GPSA equation: showing the "
                        f"{q.label} instead.\n\n")
            figure, text, numbers = _gpsa_view(result, gpsa_equation(trace, b, h, q), note)
        elif any(trace.bypass):
            b = parse_index(block, "block with a bypass", [i for i, e in enumerate(trace.bypass) if e], optional=True)
            loaded = self.service.get_model(model, weights).model
            equation = convpass_equation(loaded, result.inputs.unsqueeze(0), trace, b, q)
            figure, text, numbers = _convpass_view(result, equation)
        else:
            text = (f"{model} has neither GPSA gates nor Convpass bypasses: its attention is plain softmax(QKᵀ/√d), "
                    f"with no positional or convolutional term to put numbers into. Choose a ConViT or a Convpass "
                    f"model.")
            return plots.message_figure(f"{model}: no GPSA and no Convpass, so no equation to fill in"), text, {
                "model": model, "kind": None}
        return figure, text, {"model": model, **numbers}


def build_equation_tab(shared: Shared, service: Service) -> tuple[gr.Dropdown, gr.Slider]:
    """The tab's layout and its endpoint /equation; returns its block and head controls (for links to them).

    With `shared.in_page` the page computes and draws a ConViT's equation itself from /gpsa_data (fetched once per
    analysis, as the Content vs position tab does): a new query, block or head redraws with no server call. The
    server draws the rest (Convpass, and every model without the in-page path)."""
    view = EquationView(service)
    with gr.Row():
        block = gr.Dropdown(choices=[0, 1, 2, 3], value=0, label="Block", elem_id="equation-block",
                            allow_custom_value=True)  # the API may ask for any block of any model
        head = gr.Slider(0, shared.max_heads - 1, value=0, step=1, label="Head", elem_id="equation-head")
    with gr.Column(elem_id="equation-server"):
        # the table above the maps, each the page's width: beside them it was squeezed until numbers broke
        text = gr.Markdown(elem_id="equation-text")
        figure = plot("Where each term comes from: the maps, top keys numbered as in the formula", "equation-plot")
        numbers = numbers_panel("Numbers")
    drawn_in_page = None
    if shared.in_page:
        with gr.Column(elem_id="equation-page"):
            gr.HTML('<div id="equation-page-text"></div><canvas id="equation-canvas" width="0" height="0" '
                    'style="max-width:100%;height:auto"></canvas>',
                    label="The equation with this image's numbers, and where each term comes from")
            page_numbers = numbers_panel("Numbers", "equation-page-numbers")
        data = gr.Textbox(visible="hidden", elem_id="equation-data")
        gpsa_models = [e.name for e in service.model_entries() if e.family == "convit"]
        drawn_in_page = f"{json.dumps(gpsa_models)}.includes(model)"
    learn("the equation in numbers", LEARN)
    inputs = [shared.image, shared.model, shared.query, block, head, shared.weights, shared.invert]
    outputs = [figure, text, numbers]
    after_fit = wire_view(shared, "equation", [shared.query.change, block.input, head.release], view.render, inputs,
                          outputs, "equation", drawn_in_page)
    # the controls are fitted to the new model before the view redraws with them
    after_fit(shared.analyses.change(view.fit, [shared.image, shared.model, shared.weights, block, head, shared.invert],
                                     [block, head], api_visibility="private", **EACH_CHANGE))
    if shared.in_page:
        gpsa = GpsaView(service)
        wire_page(shared, "equation", [shared.analyses.change], gpsa.data,
                  [shared.image, shared.model, shared.weights, shared.invert], [data], "equation_data_page")
        shared.demo.load(None, js=EQUATION_JS, api_visibility="private")
        # in the page only (no server call): a new query, block or head redraws a ConViT's equation
        for event in (data.change, shared.query.change, block.change, head.change):
            event(None, [data, shared.query, block, head], page_numbers,
                  js="(data, query, block, head) => window.__equationView ? window.__equationView(data, query, "
                     "block, head) : null", **EACH_CHANGE, **PRIVATE)
    return block, head
