() => {
    // The attention tab drawn in the page from the attention the server sent once per analysis (#hover-data,
    // app.tabs.attention.AttentionView.hover_data), with no server call per move, click or change: the grid of
    // every block × head for the patch under the pointer (at rest, the query's), and the enlarged map.
    const GAP = 3, LEFT = 58, TOP = 18, BAR = 46;
    const state = {text: null, data: null, shown: null};
    const bytes = (b64) => {
        const raw = atob(b64), out = new Uint8Array(raw.length);
        for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
        return out;
    };
    const decodedMaps = (text) => {
        // app.tabs.attention.maps_data as sent, its byte arrays decoded
        const data = JSON.parse(text);
        for (const key of ['codes', 'cls_codes', 'background', 'lut_log', 'lut_linear']) data[key] = bytes(data[key]);
        return data;
    };
    const current = (text) => {
        // `text`: the data as a change event passes it (the box may not show it yet); else the box's value
        if (text === undefined) {
            const box = document.querySelector('#hover-data textarea, #hover-data input');
            text = box ? box.value : '';
        }
        if (!text) return null;
        if (text !== state.text) {
            state.text = text;
            state.data = decodedMaps(text);
            state.shown = null;
        }
        return state.data;
    };
    const codeColours = (ctx, codes, lut, cols, rows) => {
        // one pixel per key: the colour of each code of a (rows, cols) map, as ImageData of `ctx`
        const cells = ctx.createImageData(cols, rows), px = cells.data;
        for (let k = 0; k < rows * cols; k++) {
            const c = codes[k] * 3;
            px[4 * k] = lut[c];
            px[4 * k + 1] = lut[c + 1];
            px[4 * k + 2] = lut[c + 2];
            px[4 * k + 3] = 255;
        }
        return cells;
    };
    const colourBar = (ctx, data, left, top, width, logScale) => {
        // a horizontal colour bar at (left, top): the scale's 256 colours, ticked and labelled with its fixed range
        // (the log scale's colours: the codes are log-spaced, and each scale's ticks sit where its weights do)
        for (let i = 0; i < width; i++) {
            const c = Math.round(i * 255 / (width - 1)) * 3;
            ctx.fillStyle = `rgb(${data.lut_log[c]},${data.lut_log[c + 1]},${data.lut_log[c + 2]})`;
            ctx.fillRect(left + i, top, 1, 10);
        }
        ctx.fillStyle = '#000';
        ctx.font = '11px sans-serif';
        ctx.textAlign = 'center';
        ctx.textBaseline = 'middle';
        for (const [label, at] of logScale ? data.ticks_log : data.ticks_linear) {
            ctx.fillText(label, left + at * (width - 1), top + 18);
        }
        ctx.textAlign = 'left';
        ctx.fillText(logScale ? data.label_log : data.label_linear, left + width + 12, top + 5);
    };
    const layout = (data) => {
        const [rows, cols] = data.grid, cell = data.cell, pw = cols * cell, ph = rows * cell;
        const mw = data.heads * (pw + GAP) - GAP, mh = data.blocks * (ph + GAP) - GAP;
        return {rows, cols, cell, pw, ph, mw, mh, width: LEFT + mw + 8, height: TOP + mh + BAR};
    };
    // as petl_core.query.Query.label says it
    const label = (row, col) => row === null ? 'class token' : `patch (row ${row}, col ${col})`;
    const still = (data, logScale) => {
        // what no move changes, drawn once per analysis and scale and blitted on each move: light gray under every
        // panel (what shows where a block has no class token; white gaps, and white where a block has fewer heads),
        // the labels and the colour bar. A map's colour is its weight's alone: the picture is beside the grid (the
        // picker), never under the maps, where it would tint the colours the bar is read by (issue 30)
        const key = `${logScale}`;
        if (state.stillOf === data && state.stillKey === key) return state.still;
        const {pw, ph, mw, mh, width, height} = layout(data);
        const canvas = document.createElement('canvas');
        canvas.width = width;
        canvas.height = height;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, width, height);
        ctx.fillStyle = '#d9d9d9';  // (0.85 gray, as the server's mosaics leave a blank panel)
        for (let b = 0; b < data.blocks; b++) {
            for (let h = 0; h < data.heads_per_block[b]; h++) {
                ctx.fillRect(LEFT + h * (pw + GAP), TOP + b * (ph + GAP), pw, ph);
            }
        }
        ctx.fillStyle = '#000';
        ctx.font = '11px sans-serif';
        ctx.textBaseline = 'middle';
        ctx.textAlign = 'right';
        for (let b = 0; b < data.blocks; b++) ctx.fillText(`block ${b}`, LEFT - 6, TOP + b * (ph + GAP) + ph / 2);
        ctx.textAlign = 'center';
        for (let h = 0; h < data.heads; h++) ctx.fillText(`head ${h}`, LEFT + h * (pw + GAP) + pw / 2, TOP / 2);
        colourBar(ctx, data, LEFT, TOP + mh + 10, Math.min(256, mw), logScale);
        state.still = canvas;
        state.stillOf = data;
        state.stillKey = key;
        return canvas;
    };
    const drawGrid = (canvas, data, row, col, logScale) => {
        // every block × head of `data` for query (row, col) into `canvas`; row null: the class token, whose blocks
        // without one are left blank
        const {rows, cols, cell, pw, ph, width, height} = layout(data), patches = rows * cols;
        if (canvas.width !== width || canvas.height !== height) {
            canvas.width = width;
            canvas.height = height;
        }
        const ctx = canvas.getContext('2d');
        const lut = logScale ? data.lut_log : data.lut_linear, codes = data.codes;
        // one pixel per key in a small canvas (every panel side by side), drawn scaled by whole cells, opaque
        const small = state.small || (state.small = document.createElement('canvas'));
        if (small.width !== data.heads * cols || small.height !== data.blocks * rows) {
            small.width = data.heads * cols;
            small.height = data.blocks * rows;
        }
        const sctx = small.getContext('2d'), cells = sctx.createImageData(small.width, small.height), px = cells.data;
        const cls = row === null, source = cls ? data.cls_codes : codes;
        const shown = (b) => !cls || data.cls_blocks[b];
        for (let b = 0; b < data.blocks; b++) {
            if (!shown(b)) continue;
            for (let h = 0; h < data.heads_per_block[b]; h++) {
                const base = cls ? (b * data.heads + h) * patches
                    : ((b * data.heads + h) * patches + row * cols + col) * patches;
                for (let k = 0; k < patches; k++) {
                    const c = source[base + k] * 3, o = (((b * rows + ((k / cols) | 0)) * small.width)
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
        for (let b = 0; b < data.blocks; b++) {
            for (let h = 0; h < data.heads_per_block[b] && shown(b); h++) {
                ctx.drawImage(small, h * cols, b * rows, cols, rows, LEFT + h * (pw + GAP), TOP + b * (ph + GAP),
                              pw, ph);
            }
        }
        ctx.strokeStyle = '#00ffff';
        ctx.fillStyle = '#fff';
        ctx.textAlign = 'center';
        ctx.textBaseline = 'middle';
        ctx.font = '11px sans-serif';
        for (let b = 0; b < data.blocks; b++) {
            for (let h = 0; h < data.heads_per_block[b]; h++) {
                const x = LEFT + h * (pw + GAP), y = TOP + b * (ph + GAP);
                if (!shown(b)) {  // (a block the class token has not joined yet: no map, said so)
                    ctx.fillStyle = '#eee';
                    ctx.fillRect(x, y, pw, ph);
                    ctx.fillStyle = '#555';
                    ctx.fillText('no class', x + pw / 2, y + ph / 2 - 7);
                    ctx.fillText('token', x + pw / 2, y + ph / 2 + 7);
                } else if (!cls) {
                    ctx.strokeRect(x + col * cell + 0.5, y + row * cell + 0.5, cell - 1, cell - 1);
                }
            }
        }
    };
    const draw = (data, row, col, logScale, since) => {
        const canvas = document.getElementById('hover-canvas');
        if (!canvas) return;
        const started = performance.now();
        drawGrid(canvas, data, row, col, logScale);
        const caption = document.getElementById('hover-caption');
        if (caption) {
            caption.textContent = `${data.model}: attention of the ${label(row, col)}, every block and head, drawn ` +
                `in your browser (move the pointer over what the model saw; click to make it the query of the ` +
                `views below)`;
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
        // the patch of the query box's text as petl_core.query.parse_query reads it: [null, null] for the class
        // token, null for a text it refuses
        const clean = (text || 'cls').trim().toLowerCase();
        if (clean === 'cls') return [null, null];
        if (clean === 'center' || clean === 'centre') return [data.grid[0] >> 1, data.grid[1] >> 1];
        const parts = clean.replace(/^\(|\)$/g, '').split(',');
        if (parts.length !== 2 || !parts.every((p) => /^\s*[-+]?\d+\s*$/.test(p))) return null;
        const [row, col] = parts.map((p) => parseInt(p, 10));
        return row >= 0 && row < data.grid[0] && col >= 0 && col < data.grid[1] ? [row, col] : null;
    };
    // for the other views the page draws (app/tabs/gpsa.js)
    window.__mapsKit = {bytes, queryPatch, label, decodedMaps, drawGrid, colourBar};
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
    // The enlarged map: one block and head of the query, drawn from the same data on each change of the query,
    // block, head or scale (no server call), with the fixed colour bar and each cell's value under the pointer.
    const view = {query: 'center', layer: 0, head: 0, log: true};
    const E = {left: 34, top: 6, bottom: 34, bar: 14, right: 150, side: 432};
    const enlargedLayout = (data) => {
        const [rows, cols] = data.grid, cell = Math.max(4, Math.floor(E.side / Math.max(rows, cols)));
        const mw = cols * cell, mh = rows * cell;
        return {rows, cols, cell, mw, mh, width: E.left + mw + E.right, height: E.top + mh + E.bottom};
    };
    const backdrop = (data) => {
        // the model input at panel size as a canvas: the comparison shows it beside each model's maps
        if (state.backdropOf === data) return state.backdrop;
        const [rows, cols] = data.grid, pw = cols * data.cell, ph = rows * data.cell;
        const canvas = document.createElement('canvas');
        canvas.width = pw;
        canvas.height = ph;
        const image = new ImageData(pw, ph), px = image.data, bg = data.background;
        for (let i = 0, g = 0; i < pw * ph; i++, g += 3) {
            px[4 * i] = bg[g];
            px[4 * i + 1] = bg[g + 1];
            px[4 * i + 2] = bg[g + 2];
            px[4 * i + 3] = 255;
        }
        canvas.getContext('2d').putImageData(image, 0, 0);
        state.backdrop = canvas;
        state.backdropOf = data;
        return canvas;
    };
    const weightOf = (data, code) => {
        // the weight a code stands for (the middle of its step on the fixed log range); code 0: at or below the low end
        const [low, high] = data.log_range.map(Math.log10);
        return Math.pow(10, low + code / 255 * (high - low));
    };
    const enlargedCodes = (data, block, head, row, col) => {
        // the codes of one block and head for the query: a subarray of P codes, or null where the block has no
        // class token
        const patches = data.grid[0] * data.grid[1];
        if (row === null) {
            if (!data.cls_blocks[block]) return null;
            return data.cls_codes.subarray((block * data.heads + head) * patches,
                                           (block * data.heads + head + 1) * patches);
        }
        const base = ((block * data.heads + head) * patches + row * data.grid[1] + col) * patches;
        return data.codes.subarray(base, base + patches);
    };
    const drawEnlarged = (since) => {
        // `since`: the time stamp of the event that asked for it (the bench's and tests' measure)
        const data = current();
        const canvas = document.getElementById('enlarged-canvas');
        const caption = document.getElementById('enlarged-caption');
        if (!data || !canvas || !caption) return;
        const started = performance.now();
        const patch = queryPatch(view.query, data);
        const block = Math.round(view.layer), head = Math.round(view.head);
        const ctx = canvas.getContext('2d');
        const fail = (text) => {
            caption.textContent = text;
            canvas.width = 0;
            canvas.height = 0;
            state.enlarged = null;
        };
        if (!patch) return;  // (a query the server refuses: the page says so, and the last map stays)
        const [row, col] = patch;
        if (!(block >= 0 && block < data.blocks)) return fail(`block ${block} is not a block of ${data.model}`);
        if (!(head >= 0 && head < data.heads_per_block[block])) {
            return fail(`block ${block} of ${data.model} has heads 0 to ${data.heads_per_block[block] - 1}`);
        }
        const codes = enlargedCodes(data, block, head, row, col);
        if (!codes) return fail(`block ${block} has no class token: click a patch to set the query`);
        const {rows, cols, cell, mw, mh, width, height} = enlargedLayout(data);
        if (canvas.width !== width || canvas.height !== height) {
            canvas.width = width;
            canvas.height = height;
        }
        const lut = view.log ? data.lut_log : data.lut_linear;
        const small = state.enlargedSmall || (state.enlargedSmall = document.createElement('canvas'));
        small.width = cols;
        small.height = rows;
        const sctx = small.getContext('2d');
        sctx.putImageData(codeColours(sctx, codes, lut, cols, rows), 0, 0);
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, width, height);
        // the cells opaque, their weights' colours alone (the picture is beside, in the picker)
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(small, 0, 0, cols, rows, E.left, E.top, mw, mh);
        if (row !== null) {
            ctx.strokeStyle = '#00ffff';
            ctx.lineWidth = 3;
            ctx.strokeRect(E.left + col * cell + 1.5, E.top + row * cell + 1.5, cell - 3, cell - 3);
            ctx.lineWidth = 1;
        }
        // axes: row and col of each patch (every other one on a dense grid)
        ctx.fillStyle = '#000';
        ctx.font = '11px sans-serif';
        const every = Math.max(1, Math.ceil(14 / cell));
        ctx.textAlign = 'right';
        ctx.textBaseline = 'middle';
        for (let r = 0; r < rows; r += every) ctx.fillText(`${r}`, E.left - 4, E.top + (r + 0.5) * cell);
        ctx.textAlign = 'center';
        ctx.textBaseline = 'top';
        for (let c = 0; c < cols; c += every) ctx.fillText(`${c}`, E.left + (c + 0.5) * cell, E.top + mh + 3);
        ctx.fillText('col', E.left + mw / 2, E.top + mh + 18);
        ctx.save();
        ctx.translate(10, E.top + mh / 2);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText('row', 0, -6);
        ctx.restore();
        // the colour bar: the scale's 256 colours bottom to top, ticked and labelled with its fixed range
        const bx = E.left + mw + 16, by = E.top;
        for (let i = 0; i < mh; i++) {
            const c = Math.round((mh - 1 - i) * 255 / (mh - 1)) * 3;
            ctx.fillStyle = `rgb(${data.lut_log[c]},${data.lut_log[c + 1]},${data.lut_log[c + 2]})`;
            ctx.fillRect(bx, by + i, E.bar, 1);
        }
        ctx.fillStyle = '#000';
        ctx.textAlign = 'left';
        ctx.textBaseline = 'middle';
        for (const [text, at] of view.log ? data.ticks_log : data.ticks_linear) {
            const y = by + (1 - at) * (mh - 1);
            ctx.fillRect(bx + E.bar, y, 4, 1);
            ctx.fillText(text, bx + E.bar + 7, y);
        }
        ctx.save();
        ctx.translate(bx + E.bar + 56, by + mh / 2);
        ctx.rotate(Math.PI / 2);
        ctx.textAlign = 'center';
        ctx.fillText(view.log ? data.label_log : data.label_linear, 0, 0);
        ctx.restore();
        caption.textContent = `block ${block}, head ${head}: attention of the ${label(row, col)}`;
        state.enlarged = {data, codes, cell, rows, cols};
        const drawn = window.__enlargedDrawn;
        // (for the tests and bench/browser_latency.py: what is shown, and the drawing's time)
        const now = performance.now();
        window.__enlargedDrawn = {block, head, row, col, log: view.log, draw_ms: now - started,
                                  ms: now - (since === undefined ? started : since), at: now,
                                  count: drawn ? drawn.count + 1 : 1};
    };
    // the page's listeners (app.tabs.attention) pass what changed; the rest is kept from the last call
    window.__attentionView = (changes) => {
        Object.assign(view, Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)));
        drawEnlarged();
    };
    const enlargedValue = (event) => {
        // the query's weight on the cell under the pointer, read back from its code
        const shown = state.enlarged, out = document.getElementById('enlarged-value');
        if (!shown || !out || event.target.id !== 'enlarged-canvas') return;
        const r = event.target.getBoundingClientRect();
        const scale = event.target.width / r.width;
        const x = (event.clientX - r.left) * scale - E.left, y = (event.clientY - r.top) * scale - E.top;
        const c = Math.floor(x / shown.cell), row = Math.floor(y / shown.cell);
        if (c < 0 || c >= shown.cols || row < 0 || row >= shown.rows) {
            out.textContent = 'Point at a cell for its attention weight.';
            return;
        }
        const code = shown.codes[row * shown.cols + c];
        const [low, high] = shown.data.log_range;
        // (the page holds codes: a weight is known to within half a code's step, a ratio of 10^(decades/510))
        const within = (Math.pow(10, Math.log10(high / low) / 510) - 1) * 100;
        out.textContent = code === 0 ? `row ${row}, col ${c}: attention ≤ ${low}` :
            `row ${row}, col ${c}: attention ≈ ${weightOf(shown.data, code).toPrecision(3)} ` +
            `(to within ${within.toFixed(1)}%)`;
    };
    // The comparison (the Compare tab): several models at one block and query, each head and their mean, drawn
    // from /compare_data (app.tabs.compare.CompareView.data) on each change of the block, query or scale.
    const decoded = (text) => {
        if (state.compareText === text) return state.compareData;
        const data = JSON.parse(text);
        for (const model of data.models) {
            for (const key of ['codes', 'cls_codes', 'background', 'lut_log', 'lut_linear']) {
                model[key] = bytes(model[key]);
            }
        }
        state.compareText = text;
        state.compareData = data;
        return data;
    };
    const codeOf = (data, weight) => {
        // the code of a weight on the fixed log range (as petl_core.figures.attention_codes rounds it)
        const [low, high] = data.log_range.map(Math.log10);
        const scaled = (Math.log10(Math.max(weight, 1e-12)) - low) / (high - low) * 255;
        return Math.min(255, Math.max(0, Math.round(scaled)));
    };
    window.__compareView = (text, layer, query, logScale) => {
        const canvas = document.getElementById('compare-canvas');
        const caption = document.getElementById('compare-caption');
        if (!text || !canvas || !caption) return null;
        const started = performance.now();
        const data = decoded(text), models = data.models, block = Math.round(layer);
        const grids = new Set(models.map((m) => m.grid.join('×')));
        const patch = queryPatch(query, models[0]);
        const numbers = Object.fromEntries(models.map((m) => [m.model, {
            top5: m.top5, nonlocality_per_head: m.nonlocality[Math.min(block, m.blocks - 1)]}]));
        const fail = (message) => {
            caption.textContent = message;
            canvas.width = 0;
            canvas.height = 0;
            return numbers;
        };
        if (!patch) return fail(`The query ${query} is not a patch of these models' grid.`);
        const [row, col] = patch;
        if (row !== null && grids.size > 1) {
            return fail('These models cut the image into different patch grids: compare them with the class token ' +
                        'as the query.');
        }
        const heads = Math.max(...models.map((m) => m.heads_per_block[Math.min(block, m.blocks - 1)]));
        const side = Math.max(...models.map((m) => Math.max(...m.grid) * m.cell));
        const left = 8 + Math.max(...models.map((m) => m.model.length)) * 7, top = 20, gap = 4, bar = 46;
        // columns: the model input, each head, their mean
        const width = left + (heads + 2) * (side + gap) + 8, height = top + models.length * (side + gap) + bar;
        canvas.width = width;
        canvas.height = height;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, width, height);
        ctx.font = '11px sans-serif';
        ctx.textBaseline = 'middle';
        ctx.fillStyle = '#000';
        ctx.textAlign = 'center';
        ctx.fillText('model input', left + side / 2, top / 2);
        for (let h = 0; h <= heads; h++) {
            ctx.fillText(h === heads ? 'mean of heads' : `head ${h}`, left + (h + 1) * (side + gap) + side / 2,
                         top / 2);
        }
        models.forEach((m, i) => {
            const y0 = top + i * (side + gap), [rows, cols] = m.grid, pw = cols * m.cell, ph = rows * m.cell;
            const patches = rows * cols, lut = logScale ? m.lut_log : m.lut_linear;
            ctx.fillStyle = '#000';
            ctx.textAlign = 'right';
            ctx.fillText(m.model, left - 6, y0 + ph / 2);
            const blank = (x, text) => {
                ctx.fillStyle = '#eee';
                ctx.fillRect(x, y0, pw, ph);
                ctx.fillStyle = '#555';
                ctx.textAlign = 'center';
                text.split('\n').forEach((line, k, all) => ctx.fillText(line, x + pw / 2,
                                                                         y0 + ph / 2 + (k - (all.length - 1) / 2) * 14));
            };
            const n = block < m.blocks ? m.heads_per_block[block] : 0;
            const maps = [];
            for (let h = 0; h < n; h++) maps.push(enlargedCodes(m, block, h, row, col));
            // the mean of the heads' weights, coded on the same scale (each weight is read back from its code)
            let mean = null;
            if (n && maps[0]) {
                mean = new Uint8Array(patches);
                for (let k = 0; k < patches; k++) {
                    let sum = 0;
                    for (let h = 0; h < n; h++) sum += maps[h][k] === 0 ? 0 : weightOf(m, maps[h][k]);
                    mean[k] = codeOf(m, sum / n);
                }
            }
            const small = document.createElement('canvas');
            small.width = cols;
            small.height = rows;
            const sctx = small.getContext('2d');
            ctx.imageSmoothingEnabled = true;  // the picture, beside the maps (never under them)
            ctx.drawImage(backdrop(m), left, y0, pw, ph);
            if (row !== null) {
                ctx.strokeStyle = '#00ffff';
                ctx.strokeRect(left + col * m.cell + 0.5, y0 + row * m.cell + 0.5, m.cell - 1, m.cell - 1);
            }
            for (let h = 0; h <= heads; h++) {
                const x = left + (h + 1) * (side + gap), codes = h === heads ? mean : (h < n ? maps[h] : undefined);
                if (block >= m.blocks) {
                    blank(x, `no block ${block}`);
                    continue;
                }
                if (codes === undefined) continue;  // (a model with fewer heads at this block)
                if (codes === null) {
                    blank(x, 'no class token\nin this block');
                    continue;
                }
                sctx.putImageData(codeColours(sctx, codes, lut, cols, rows), 0, 0);
                ctx.imageSmoothingEnabled = false;  // (opaque: the weight's colour alone)
                ctx.drawImage(small, 0, 0, cols, rows, x, y0, pw, ph);
                if (row !== null) {
                    ctx.strokeStyle = '#00ffff';
                    ctx.strokeRect(x + col * m.cell + 0.5, y0 + row * m.cell + 0.5, m.cell - 1, m.cell - 1);
                }
            }
        });
        colourBar(ctx, models[0], left, top + models.length * (side + gap) + 8, 256, logScale);
        caption.textContent = `block ${block}, attention of the ${label(row, col)}` + (logScale ? ' (log scale)' : '');
        const drawn = window.__compareDrawn;
        window.__compareDrawn = {block, row, col, log: logScale, models: models.map((m) => m.model),
                                 draw_ms: performance.now() - started, count: drawn ? drawn.count + 1 : 1};
        return numbers;
    };
    // pointerrawupdate (Chromium, secure pages) comes as the input arrives; mousemove waits for the next frame
    const moves = 'onpointerrawupdate' in window ? 'pointerrawupdate' : 'mousemove';
    document.addEventListener(moves, (event) => {
        enlargedValue(event);
        const data = current();
        if (!data) return;
        const patch = patchUnder(event, data);
        if (patch) show(data, patch[0], patch[1], logScaleNow(), event.timeStamp);
    });
    // a click makes the patch the query: its grid and enlarged map are drawn here at once, before the server sets
    // the query box (whose change then draws the other tabs)
    document.addEventListener('click', (event) => {
        const data = current();
        const patch = data && patchUnder(event, data);
        if (!patch) return;
        state.shown = null;  // (drawn again even when the pointer's move drew it: the click is timed on its own)
        show(data, patch[0], patch[1], logScaleNow(), event.timeStamp);
        view.query = `${patch[0]},${patch[1]}`;  // (the server sets the query box to it; its change redraws the same)
        drawEnlarged(event.timeStamp);
        const clicked = window.__clickDrawn;
        // (for bench/browser_latency.py: from the click to the drawn canvas)
        window.__clickDrawn = {row: patch[0], col: patch[1], ms: window.__hoverDrawn.ms,
                               enlarged_ms: window.__enlargedDrawn ? window.__enlargedDrawn.ms : null,
                               count: clicked ? clicked.count + 1 : 1};
        // the other views the page draws (gpsa.js, equation.js, grids.js) redraw for the new query now too
        document.dispatchEvent(new CustomEvent('explorer-query', {detail: {query: view.query, at: event.timeStamp}}));
    }, true);
    document.addEventListener('mouseout', (event) => {
        if (event.target instanceof HTMLImageElement && event.target.closest('#picker')) window.__hoverShowQuery();
    });
}
