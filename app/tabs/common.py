"""Pieces every tab uses: the page's shared components, a captioned plot, a folded numbers panel, the export row."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

__all__ = ["Shared", "export_row", "learn", "numbers_panel", "plot", "wire_export"]


@dataclass(frozen=True)
class Shared:
    """What the page makes before the tabs, for the tabs to read and listen to."""

    demo: gr.Blocks
    """The page: its load event draws the views that need no image."""
    image: gr.Image
    """The image file to analyse (filepath)."""
    model: gr.Dropdown
    """The zoo model's name."""
    weights: gr.File
    """Optional weights for the model's architecture (filepath)."""
    query: gr.Textbox
    """'cls', 'center' or 'row,col'."""
    log_scale: gr.Checkbox
    """Attention maps on a logarithmic colour scale."""
    invert: gr.Checkbox
    """Invert light backgrounds for the light-on-dark models (petl_core.inputs): every view passes it on, so all
    of them show the same analysis."""
    picker: gr.Image
    """What the model saw, with the query patch framed: the views that draw a query redraw it."""
    tab: gr.Textbox
    """The id of the tab shown (hidden): views that cost much to draw and need no image draw only when shown."""
    analyses: gr.State
    """How many analyses this page has shown: it changes after each one (the controls fitted first), so the views
    that draw an analysis listen to its change."""
    max_blocks: int
    """Blocks of the deepest zoo model: the range of block sliders before an analysis fits them."""
    max_heads: int
    """Heads of the widest zoo model."""


def plot(caption: str, elem_id: str) -> gr.Plot:
    """A plot with its caption above it (Gradio's floating label would hide the top of figures)."""
    with gr.Column():
        gr.Markdown(f"**{caption}**")
        return gr.Plot(show_label=False, elem_id=elem_id)


def numbers_panel(label: str) -> gr.JSON:
    """The numbers behind a view, folded away until asked for."""
    with gr.Accordion(label, open=False):
        return gr.JSON(show_label=False, max_height=300)


def learn(topic: str, text: str) -> None:
    """The view's "Learn" note (Markdown), folded away under the view."""
    with gr.Accordion(f"Learn: {topic}", open=False):
        gr.Markdown(text)


def export_row(view: str, what: str) -> tuple[gr.Button, gr.File]:
    """The export button and the file list it fills (hidden until there are files, elem_id '<view>-files')."""
    with gr.Row():
        button = gr.Button(f"Export view ({what})", size="sm", scale=0)
        files = gr.File(label="Exported files", file_count="multiple", visible=False, elem_id=f"{view}-files")
    return button, files


def wire_export(button: gr.Button, export: Callable[..., list[str]], inputs: list, files: gr.File,
                api_name: str) -> None:
    """`export` (returns file paths) as the API endpoint `api_name`; in the page, the file list then appears."""
    button.click(export, inputs, files, api_name=api_name).success(
        lambda: gr.File(visible=True), None, files, api_visibility="private")
    # files of another model, image or setting would pass for this view's: any change of the inputs takes them away
    gr.on([component.change for component in inputs], lambda: gr.File(value=None, visible=False), None, files,
          queue=False, api_visibility="private")
