() => {
    // The hover grid: every block × head for the patch under the pointer, drawn from the attention the server sent
    // once per analysis (#hover-data, app.tabs.attention.AttentionView.hover_data), with no server call per move.
    const GAP = 3, LEFT = 58, TOP = 18, BAR = 46;
    const state = {text: null, data: null, shown: null};
    const bytes = (b64) => {
        const raw = atob(b64), out = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
        return out;
    };
    const current = (text) => {
        // `text`: the data as a change event passes it (the box may not show it yet); else the box's value
        if (text === undefined) {
            const box = document.querySelector('#hover-data textarea, #hover-data input');
            text = box ? box.value : '';
        }
        if (!text) return null;
        if (text !== state.text) {
            const data = JSON.parse(text);
            for (const key of ['codes', 'background', 'lut_log', 'lut_linear']) data[key] = bytes(data[key]);
            state.text = text;
            state.data = data;
            state.shown = null;
        }
        return state.data;
    };
    const layout = (data) => {
        const [rows, cols] = data.grid, cell = data.cell, pw = cols * cell, ph = rows * cell;
        const mw = data.heads * (pw + GAP) - GAP, mh = data.blocks * (ph + GAP) - GAP;
        return {rows, cols, cell, pw, ph, mw, mh, width: LEFT + mw + 8, height: TOP + mh + BAR};
    };
    const still = (data, logScale) => {
        // what no move changes, drawn once per analysis and scale and blitted on each move: the model input under
        // every panel (white gaps, and white where a block has fewer heads), the labels and the colour bar
        const key = `${logScale}`;
        if (state.stillOf === data && state.stillKey === key) return state.still;
        const {pw, ph, mw, mh, width, height} = layout(data);
        const canvas = document.createElement('canvas');
        canvas.width = width;
        canvas.height = height;
        const ctx = canvas.getContext('2d');
        const image = new ImageData(mw, mh), px = image.data, bg = data.background;
        px.fill(255);
        for (let b = 0; b < data.blocks; b++) {
            for (let h = 0; h < data.heads_per_block[b]; h++) {
                const oy = b * (ph + GAP), ox = h * (pw + GAP);
                for (let y = 0; y < ph; y++) {
                    let o = ((oy + y) * mw + ox) * 4, g = y * pw * 3;
                    for (let x = 0; x < pw; x++, o += 4, g += 3) {
                        px[o] = bg[g];
                        px[o + 1] = bg[g + 1];
                        px[o + 2] = bg[g + 2];
                    }
                }
            }
        }
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, width, height);
        ctx.putImageData(image, LEFT, TOP);
        ctx.fillStyle = '#000';
        ctx.font = '11px sans-serif';
        ctx.textBaseline = 'middle';
        ctx.textAlign = 'right';
        for (let b = 0; b < data.blocks; b++) ctx.fillText(`block ${b}`, LEFT - 6, TOP + b * (ph + GAP) + ph / 2);
        ctx.textAlign = 'center';
        for (let h = 0; h < data.heads; h++) ctx.fillText(`head ${h}`, LEFT + h * (pw + GAP) + pw / 2, TOP / 2);
        // the colour bar: the scale's 256 colours, ticked and labelled with its fixed range
        const barTop = TOP + mh + 10, barWidth = Math.min(256, mw);
        for (let i = 0; i < barWidth; i++) {
            const c = Math.round(i * 255 / (barWidth - 1)) * 3;
            ctx.fillStyle = `rgb(${data.lut_log[c]},${data.lut_log[c + 1]},${data.lut_log[c + 2]})`;
            ctx.fillRect(LEFT + i, barTop, 1, 10);
        }
        ctx.fillStyle = '#000';
        for (const [label, at] of logScale ? data.ticks_log : data.ticks_linear) {
            ctx.fillText(label, LEFT + at * (barWidth - 1), barTop + 18);
        }
        ctx.textAlign = 'left';
        ctx.fillText(logScale ? data.label_log : data.label_linear, LEFT + barWidth + 12, barTop + 5);
        state.still = canvas;
        state.stillOf = data;
        state.stillKey = key;
        return canvas;
    };
    const draw = (data, row, col, logScale, since) => {
        const canvas = document.getElementById('hover-canvas');
        if (!canvas) return;
        const started = performance.now();
        const {rows, cols, cell, pw, ph, width, height} = layout(data), patches = rows * cols;
        if (canvas.width !== width || canvas.height !== height) {
            canvas.width = width;
            canvas.height = height;
        }
        const ctx = canvas.getContext('2d');
        const lut = logScale ? data.lut_log : data.lut_linear, codes = data.codes;
        // one pixel per key in a small canvas (every panel side by side), drawn scaled by whole cells over the
        // backgrounds with alpha 0.6: 0.4·background + 0.6·colour, as the server's grid blends them
        const small = state.small || (state.small = document.createElement('canvas'));
        if (small.width !== data.heads * cols || small.height !== data.blocks * rows) {
            small.width = data.heads * cols;
            small.height = data.blocks * rows;
        }
        const sctx = small.getContext('2d'), cells = sctx.createImageData(small.width, small.height), px = cells.data;
        const query = row * cols + col;
        for (let b = 0; b < data.blocks; b++) {
            for (let h = 0; h < data.heads_per_block[b]; h++) {
                const base = ((b * data.heads + h) * patches + query) * patches;
                for (let k = 0; k < patches; k++) {
                    const c = codes[base + k] * 3, o = (((b * rows + ((k / cols) | 0)) * small.width)
                                                        + h * cols + (k % cols)) * 4;
                    px[o] = lut[c];
                    px[o + 1] = lut[c + 1];
                    px[o + 2] = lut[c + 2];
                    px[o + 3] = 255;
                }
            }
        }
        sctx.putImageData(cells, 0, 0);
        ctx.globalAlpha = 1;
        ctx.drawImage(still(data, logScale), 0, 0);
        ctx.imageSmoothingEnabled = false;
        ctx.globalAlpha = 0.6;
        for (let b = 0; b < data.blocks; b++) {
            for (let h = 0; h < data.heads_per_block[b]; h++) {
                ctx.drawImage(small, h * cols, b * rows, cols, rows, LEFT + h * (pw + GAP), TOP + b * (ph + GAP),
                              pw, ph);
            }
        }
        ctx.globalAlpha = 1;
        ctx.strokeStyle = '#00ffff';
        for (let b = 0; b < data.blocks; b++) {
            for (let h = 0; h < data.heads_per_block[b]; h++) {
                ctx.strokeRect(LEFT + h * (pw + GAP) + col * cell + 0.5, TOP + b * (ph + GAP) + row * cell + 0.5,
                               cell - 1, cell - 1);
            }
        }
        const caption = document.getElementById('hover-caption');
        if (caption) {
            caption.textContent = `${data.model}: attention of the patch (row ${row}, col ${col}), every block ` +
                `and head, drawn in your browser (move the pointer over what the model saw; click to make it the ` +
                `query of the views below)`;
        }
        const drawn = window.__hoverDrawn;
        // (for bench/browser_latency.py: from the pointer event to the drawn canvas, and the drawing alone)
        const now = performance.now();
        window.__hoverDrawn = {row, col, ms: now - since, draw_ms: now - started, count: drawn ? drawn.count + 1 : 1};
    };
    const logScaleNow = () => {
        const box = document.querySelector('#log-scale input');
        return box ? box.checked : true;
    };
    const patchUnder = (event, data) => {
        // the (row, col) under the pointer on the picture of what the model saw, or null off it
        const img = event.target;
        if (!(img instanceof HTMLImageElement) || !img.closest('#picker') || !img.naturalWidth) return null;
        // the picture sits centred in the element at its own aspect ratio (object-fit contain or scale-down)
        const r = img.getBoundingClientRect(), fit = getComputedStyle(img).objectFit;
        let w = r.width, h = r.height;
        if (fit === 'contain' || fit === 'scale-down') {
            const s = Math.min(w / img.naturalWidth, h / img.naturalHeight, fit === 'scale-down' ? 1 : Infinity);
            w = img.naturalWidth * s;
            h = img.naturalHeight * s;
        }
        const fx = (event.clientX - r.left - (r.width - w) / 2) / w;
        const fy = (event.clientY - r.top - (r.height - h) / 2) / h;
        if (fx < 0 || fx >= 1 || fy < 0 || fy >= 1) return null;
        return [Math.min(data.grid[0] - 1, Math.floor(fy * data.grid[0])),
                Math.min(data.grid[1] - 1, Math.floor(fx * data.grid[1]))];
    };
    const show = (data, row, col, logScale, since) => {
        const shown = `${row},${col},${logScale}`;
        if (shown === state.shown) return false;  // (the same patch: nothing to redraw)
        state.shown = shown;
        state.last = [row, col];
        draw(data, row, col, logScale, since);
        return true;
    };
    const queryPatch = (text, data) => {
        // the patch of the query box's text as petl_core.query.parse_query reads it; null for the class token
        const clean = (text || 'cls').trim().toLowerCase();
        if (clean === 'center' || clean === 'centre') return [data.grid[0] >> 1, data.grid[1] >> 1];
        const parts = clean.replace(/^\(|\)$/g, '').split(',');
        if (parts.length !== 2 || !parts.every((p) => /^\s*[-+]?\d+\s*$/.test(p))) return null;
        const [row, col] = parts.map((p) => parseInt(p, 10));
        return row >= 0 && row < data.grid[0] && col >= 0 && col < data.grid[1] ? [row, col] : null;
    };
    // At rest (pointer off the picture) the canvas shows the query's patch: after an analysis, a new query, or
    // the pointer leaving the picture. Called by the page's change listeners (app.tabs.attention).
    window.__hoverShowQuery = (query, text) => {
        const data = current(text);
        if (!data) return;
        const box = document.querySelector('#query textarea, #query input');
        const patch = queryPatch(query === undefined ? (box ? box.value : '') : query, data);
        if (patch) show(data, patch[0], patch[1], logScaleNow(), performance.now());
    };
    window.__hoverRescale = (logScale) => {
        const data = current();
        if (data && state.last) show(data, state.last[0], state.last[1], logScale, performance.now());
    };
    // pointerrawupdate (Chromium, secure pages) comes as the input arrives; mousemove waits for the next frame
    const moves = 'onpointerrawupdate' in window ? 'pointerrawupdate' : 'mousemove';
    document.addEventListener(moves, (event) => {
        const data = current();
        if (!data) return;
        const patch = patchUnder(event, data);
        if (patch) show(data, patch[0], patch[1], logScaleNow(), event.timeStamp);
    });
    // a click makes the patch the query: its maps are drawn here at once, before the server's figures follow
    document.addEventListener('click', (event) => {
        const data = current();
        const patch = data && patchUnder(event, data);
        if (!patch) return;
        state.shown = null;  // (drawn again even when the pointer's move drew it: the click is timed on its own)
        show(data, patch[0], patch[1], logScaleNow(), event.timeStamp);
        const clicked = window.__clickDrawn;
        // (for bench/browser_latency.py: from the click to the drawn canvas)
        window.__clickDrawn = {row: patch[0], col: patch[1], ms: window.__hoverDrawn.ms,
                               count: clicked ? clicked.count + 1 : 1};
    }, true);
    document.addEventListener('mouseout', (event) => {
        if (event.target instanceof HTMLImageElement && event.target.closest('#picker')) window.__hoverShowQuery();
    });
}
