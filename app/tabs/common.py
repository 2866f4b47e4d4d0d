"""Pieces every tab uses: a captioned plot, a folded numbers panel, the export row."""
from __future__ import annotations

from collections.abc import Callable

import gradio as gr

__all__ = ["export_row", "numbers_panel", "plot", "wire_export"]


def plot(caption: str, elem_id: str) -> gr.Plot:
    """A plot with its caption above it (Gradio's floating label would hide the top of figures)."""
    with gr.Column():
        gr.Markdown(f"**{caption}**")
        return gr.Plot(show_label=False, elem_id=elem_id)


def numbers_panel(label: str) -> gr.JSON:
    """The numbers behind a view, folded away until asked for."""
    with gr.Accordion(label, open=False):
        return gr.JSON(show_label=False, max_height=300)


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
