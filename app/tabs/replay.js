() => {
    // The Training tab's two grids (the ConViT's and the DeiT's every block × head at the shown snapshot) drawn in
    // the page from the snapshots' attention the server sent once per step (#replay-<side>-data,
    // app.tabs.replay.ReplayView.render_data), as the attention tab draws its grid (app/tabs/attention.js): a new
    // query or scale redraws both with no server call.
    const SIDES = ['convit', 'deit'];
    const decoded = {};
    let last = null;
    window.__replayView = (texts, query, log, since = performance.now()) => {
        const kit = window.__mapsKit;
        if (!kit) return;
        last = {texts, log};
        const shown = {};
        texts.forEach((text, i) => {
            const side = SIDES[i], canvas = document.getElementById(`replay-${side}-canvas`);
            const caption = document.getElementById(`replay-${side}-caption`);
            if (!canvas || !caption) return;
            if (!text) {  // (no such model shipped: the heading says so)
                canvas.width = canvas.height = 0;
                caption.textContent = '';
                return;
            }
            if (!decoded[side] || decoded[side].text !== text) decoded[side] = {text, data: kit.decodedMaps(text)};
            const data = decoded[side].data, patch = kit.queryPatch(query, data);
            if (!patch) return;  // (a query the box refuses: the page says so where it is typed)
            kit.drawGrid(canvas, data, patch[0], patch[1], log);
            caption.textContent = `${data.model} at step ${data.step}: attention of the ` +
                `${kit.label(patch[0], patch[1])}, every block and head, drawn in your browser`;
            shown[side] = {model: data.model, step: data.step, row: patch[0], col: patch[1]};
        });
        const drawn = window.__replayDrawn;
        // (for the tests: what each grid shows)
        window.__replayDrawn = {...shown, log, ms: performance.now() - since, count: drawn ? drawn.count + 1 : 1};
    };
    // a click on the picture: the new query, drawn at once (before the server sets the query box)
    document.addEventListener('explorer-query', (event) => {
        if (last) window.__replayView(last.texts, event.detail.query, last.log, event.detail.at);
    });
}
