() => {
    // Grids of every block × head drawn in the page from the maps the server sent (app.tabs.attention.maps_data),
    // as the attention tab draws its own (app/tabs/attention.js): the Training tab's two (the ConViT's and the
    // DeiT's at the shown snapshot, #replay-<side>-data) and the dial's (the ConViT with its gates as set,
    // #dial-data). A new query or scale redraws them with no server call.
    const decoded = {}, redraws = {};  // (per view: its last drawing again, for a new query)
    // Draw grid `id` (#<id>-canvas, its caption #<id>-caption) from `text` (maps_data JSON; empty: nothing to show)
    // for `query` at the log or linear scale; `says(data)`: what the caption says it shows. Returns what it drew.
    const draw = (id, text, query, log, says) => {
        const kit = window.__mapsKit;
        const canvas = document.getElementById(`${id}-canvas`), caption = document.getElementById(`${id}-caption`);
        if (!kit || !canvas || !caption) return null;
        if (!text) {
            canvas.width = canvas.height = 0;
            caption.textContent = '';
            return null;
        }
        if (!decoded[id] || decoded[id].text !== text) decoded[id] = {text, data: kit.decodedMaps(text)};
        const data = decoded[id].data, patch = kit.queryPatch(query, data);
        if (!patch) return null;  // (a query the box refuses: the page says so where it is typed)
        kit.drawGrid(canvas, data, patch[0], patch[1], log);
        caption.textContent = `${says(data)}: attention of the ${kit.label(patch[0], patch[1])}, every block and ` +
            'head, drawn in your browser';
        return {model: data.model, step: data.step, row: patch[0], col: patch[1]};
    };
    const SIDES = ['convit', 'deit'];
    window.__replayView = (texts, query, log, since = performance.now()) => {
        redraws.replay = (newer, at) => window.__replayView(texts, newer, log, at);
        const shown = {};
        texts.forEach((text, i) => {
            const drawn = draw(`replay-${SIDES[i]}`, text, query, log, (data) => `${data.model} at step ${data.step}`);
            if (drawn) shown[SIDES[i]] = drawn;
        });
        const drawn = window.__replayDrawn;
        // (for the tests: what each grid shows)
        window.__replayDrawn = {...shown, log, ms: performance.now() - since, count: drawn ? drawn.count + 1 : 1};
    };
    window.__dialView = (text, query, log, since = performance.now()) => {
        redraws.dial = (newer, at) => window.__dialView(text, newer, log, at);
        const shown = draw('dial', text, query, log, (data) => `${data.model} with the gates as set`);
        const drawn = window.__dialDrawn;
        window.__dialDrawn = {...(shown || {}), log, ms: performance.now() - since, count: drawn ? drawn.count + 1 : 1};
    };
    // a click on the picture: the new query, drawn at once (before the server sets the query box)
    document.addEventListener('explorer-query', (event) => {
        Object.values(redraws).forEach((redraw) => redraw(event.detail.query, event.detail.at));
    });
}
