"""Pieces every tab uses: the page's shared components, a captioned plot, a folded numbers panel, the export row."""
from __future__ import annotations

import functools
import inspect
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from app.answers import ANSWERS, figure_output
from app.queue_policy import lane_of
from app.service import QueryError
from petl_core.errors import HubUnavailableError

__all__ = ["EACH_CHANGE", "PRIVATE", "Repeats", "Shared", "export_row", "learn", "numbers_panel", "plot", "quiet",
           "wire_export", "wire_page", "wire_view"]

# (a helper's events are not public API)
PRIVATE = {"api_visibility": "private"}
EACH_CHANGE = {"trigger_mode": "multiple"}
"""For a listener of an event that others listen to as well (the query's change, the analyses' count, the model's
change): Gradio 6.31 holds back an "always_last" listener that is still running and, when it finishes, sends the whole
event again to every listener, so two such listeners of one event keep each other running for ever. With "multiple"
each change runs each listener once, in the order of the changes."""


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
    sets: gr.State
    """How many times the server set the image or the model (a gallery pick, a sketch, the atlas, a link, a guide
    step): it changes after each, standing for the image's change event (see `changes`)."""
    max_blocks: int
    """Blocks of the deepest zoo model: the range of block sliders before an analysis fits them."""
    max_heads: int
    """Heads of the widest zoo model."""
    in_page: bool = True
    """The page draws the views it can from numbers the server sends once per analysis (the attention tab); False:
    the server draws them for each change (app.py --server-drawn, for a browser or a test without the in-page
    path)."""
    warm_ups: list[Callable[[str, str | None], None]] = field(default_factory=list)
    """What each tab computes ahead for a view the guided path opens, given its model and example image (a path, or
    None): the answers every student of a class asks first (app.ui's `warm_up`, called at start)."""

    def changes(self, components: list[gr.components.Component]) -> list:
        """The events that say one of `components` changed. Not the change event of the image or the weights file:
        Gradio 6.31 fires it again each time an event that reads the file starts (it sets the same value back as a
        new object, and the component compares by identity), so a listener that reads the image, or starts views
        that do, would run for ever. For them: what the user does (upload, clear) and, for the image, `sets`."""
        events = []
        for component in components:
            if component is self.image:
                events += [component.input, self.sets.change]
            elif component is self.weights:
                events += [component.upload, component.clear]
            else:
                events.append(component.change)
        return list({(e.__self__._id, e.event_name): e for e in events}.values())

    def after_set(self, dependency) -> None:
        """Count a server's set of the image (see `sets`) once `dependency`, which made it, succeeded."""
        # (queued: Gradio 6.31 fires no change of a State an unqueued event set)
        dependency.success(lambda sets: sets + 1, self.sets, self.sets, **PRIVATE)


class Repeats:
    """Per page session, the inputs of one listener's last call, noted when the call starts. Gradio 6.31's Dropdown
    sends `input` when an option is clicked and again on the blur that follows (and on any blur, changed or not), so
    a listener of the model's input is called twice with the same inputs, at times at once; the second call learns
    here that it repeats the first and leaves the page as it is."""

    def __init__(self, sessions: int = 1024) -> None:
        self._last: OrderedDict[str, str] = OrderedDict()
        self._sessions = sessions  # (the least recently seen are forgotten past this many)
        self._lock = threading.Lock()

    def repeated(self, request: gr.Request | None, *inputs) -> bool:
        """Whether `inputs` are those of the session's previous call; if not, they are noted as its last. A call
        without a session (none to tell apart) never repeats."""
        session = getattr(request, "session_hash", None)
        if not session:
            return False
        key = repr(inputs)
        with self._lock:
            if self._last.get(session) == key:
                return True
            self._last[session] = key
            self._last.move_to_end(session)
            while len(self._last) > self._sessions:
                self._last.popitem(last=False)
        return False

    def forget(self, request: gr.Request | None) -> None:
        """Let the session's next call run whatever its inputs (its last one showed nothing)."""
        with self._lock:
            self._last.pop(getattr(request, "session_hash", None), None)


REPORTED_ONCE = (QueryError, HubUnavailableError)
"""Refusals of the page's shared inputs that the page reports once, where the input is set (the query box, the
analysis), instead of once per view: a query off the grid, a hub model that cannot be reached."""


def quiet(render: Callable, outputs: int) -> Callable:
    """`render` for the page's own listener: on a refusal the page reports once (REPORTED_ONCE), its `outputs` are
    left as they are (no second toast, no error badge over the last good view)."""
    @functools.wraps(render)  # (keeps the signature Gradio reads: gr.Progress parameters)
    def call(*args, **kwargs):
        try:
            return render(*args, **kwargs)
        except REPORTED_ONCE:
            return (gr.skip(),) * outputs if outputs > 1 else gr.skip()

    return call


def wire_view(shared: Shared, tab: str, triggers: list, render: Callable, inputs: list, outputs: list,
              api_name: str, drawn_in_page: str | None = None) -> Callable:
    """`render` as the endpoint `api_name`, whose callers get every refusal, and as the page's listener of
    `triggers` (named `<api_name>_page`: see `wire_page`); returns what `wire_page` returns."""
    gr.Button(visible=False).click(render, inputs, outputs, api_name=api_name)
    return wire_page(shared, tab, triggers, render, inputs, outputs, f"{api_name}_page", drawn_in_page)


def wire_page(shared: Shared, tab: str, triggers: list, render: Callable, inputs: list, outputs: list,
              name: str, drawn_in_page: str | None = None) -> Callable:
    """`render` as the page's listener `name` of `triggers` and of the tab switches, which draws only while the tab
    `tab` is shown, once the page has an analysis, and only what it has not drawn yet (the `inputs` of its last
    draw are kept): the page then spends its time on the view in sight, and opening a tab draws what changed while
    it was hidden. On a refusal the page reports once (REPORTED_ONCE) the view is left as it is. Returns
    `after(dependency)`, which draws the same way once `dependency` succeeded.

    `drawn_in_page`: a JavaScript expression of `model` (the model box's value), true where the page draws the view
    of that model itself: the triggers then make no server call."""
    render = ANSWERS.answering(render)  # (a view of what others asked already answers at once)
    drawn = gr.State(None)  # the inputs of the last draw, as text
    keep = (gr.skip(),) * (len(outputs) + 1)

    def stale(shown: str, analyses: int, last: str | None, args: tuple) -> str | None:
        """The key of `args` when the view should draw them now, else None."""
        key = repr(args[:len(inputs)])  # (Gradio puts a gr.Progress argument after them)
        return key if shown == tab and analyses and key != last else None

    def tupled(drawing) -> tuple:
        return drawing if len(outputs) > 1 else (drawing,)

    if inspect.isgeneratorfunction(render):  # (Gradio streams only what it sees is a generator)
        def draw(shown, analyses, last, *args):
            if (key := stale(shown, analyses, last, args)) is None:
                yield keep
                return
            try:
                for drawing in render(*args):
                    yield (*tupled(drawing), key)
            except REPORTED_ONCE:
                yield keep
    else:
        def draw(shown, analyses, last, *args):
            if (key := stale(shown, analyses, last, args)) is None:
                return keep
            try:
                return (*tupled(render(*args)), key)
            except REPORTED_ONCE:
                return keep

    draw.lane = lane_of(render)
    # the signature Gradio reads (it passes a gr.Progress to the parameter whose default is one)
    parameters = list(inspect.signature(render).parameters.values())
    draw.__signature__ = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                            for p in ("shown", "analyses", "last")] + parameters)
    page_inputs, page_outputs = [shared.tab, shared.analyses, drawn, *inputs], [*outputs, drawn]
    # The triggers pass through a gate in the page: while the tab is hidden it keeps its value (no change event, so
    # no call to the server, which would only answer that there is nothing to draw); opening the tab draws.
    gate = gr.Textbox("", visible="hidden")
    gate_listener = {"inputs": [shared.tab, shared.model, gate], "outputs": gate, **PRIVATE,
                     "js": f"(shown, model, gate) => shown === {json.dumps(tab)}"
                           f"{f' && !({drawn_in_page})' if drawn_in_page else ''} ? String(performance.now()) : gate"}
    # (a view the page may draw itself: opening the tab and the `after` dependencies pass through the gate too)
    gated = [shared.tab.change] if drawn_in_page else []
    gr.on(triggers + gated, None, **gate_listener, **EACH_CHANGE)
    gr.on([gate.change] if drawn_in_page else [gate.change, shared.tab.change], draw, page_inputs, page_outputs,
          api_name=name, **EACH_CHANGE, **PRIVATE)

    def after(dependency) -> None:
        if drawn_in_page:
            dependency.success(None, **gate_listener)
        else:
            dependency.success(draw, page_inputs, page_outputs, **PRIVATE)

    return after


def plot(caption: str, elem_id: str) -> gr.Plot:
    """A plot with its caption above it (Gradio's floating label would hide the top of figures)."""
    with gr.Column():
        gr.Markdown(f"**{caption}**")
        return figure_output(show_label=False, elem_id=elem_id)


def numbers_panel(label: str, elem_id: str | None = None) -> gr.JSON:
    """The numbers behind a view, folded away until asked for."""
    with gr.Accordion(label, open=False):
        return gr.JSON(show_label=False, max_height=300, elem_id=elem_id)


def learn(topic: str, text: str) -> None:
    """The view's "Learn" note (Markdown), folded away under the view."""
    with gr.Accordion(f"Learn: {topic}", open=False):
        gr.Markdown(text)


def export_row(view: str, what: str) -> tuple[gr.Button, gr.File]:
    """The export button and the file list it fills (hidden until there are files, elem_id '<view>-files')."""
    with gr.Row():
        button = gr.Button(f"Export view ({what})", size="sm", scale=0)
        files = gr.File(label="Exported files", file_count="multiple", visible="hidden", elem_id=f"{view}-files")
    return button, files


def wire_export(shared: Shared, button: gr.Button, export: Callable[..., list[str]], inputs: list, files: gr.File,
                api_name: str) -> None:
    """`export` (returns file paths) as the API endpoint `api_name`; in the page, the file list then appears."""
    button.click(export, inputs, files, api_name=api_name).success(
        lambda: gr.File(visible=True), None, files, api_visibility="private")
    # files of another model, image or setting would pass for this view's: any change of the inputs takes them away
    gr.on(shared.changes(inputs), lambda: gr.File(value=None, visible="hidden"), None, files, queue=False,
          **EACH_CHANGE, **PRIVATE)
