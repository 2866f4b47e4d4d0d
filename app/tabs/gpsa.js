() => {
    // The GPSA decomposition computed and drawn in the page from the numbers the server sent once per analysis
    // (#gpsa-data, app.tabs.gpsa.GpsaView.data): for the query, every head of one GPSA block as three maps, the
    // mixed attention A = (1 − σ)·C + σ·P, its content part C = softmax(q_i·kᵀ·scale) and its positional part
    // P = softmax(v_pos·r_ij + b), r_ij = (dx, dy, dx² + dy²). A new query, block or scale redraws with no server
    // call. Each map's colour is its weight alone on the fixed scale (the picture is beside the maps, not under).
    const LEFT = 96, TOP = 36, GAP = 4, BAR = 46, PANEL = 80;
    const ROWS = [['mixed A', 'attention', '#9467bd'], ['content C', 'content', '#1f77b4'],
                  ['positional P', 'positional', '#d62728']];  // (app.tabs.equation.TERM_COLOURS)
    const state = {text: null, data: null, shown: null};
    const kit = () => window.__mapsKit;  // (app/tabs/attention.js: base64 bytes, the query box's patch, labels)
    const decoded = (text) => {
        if (!text) return null;
        if (text !== state.text) {
            const data = JSON.parse(text);
            for (const key of ['lut_log', 'lut_linear', 'background']) data[key] = kit().bytes(data[key]);
            for (const block of data.blocks) {
                block.queries = new Float32Array(kit().bytes(block.queries).buffer);
                block.keys = new Float32Array(kit().bytes(block.keys).buffer);
            }
            state.text = text;
            state.data = data;
        }
        return state.data;
    };
    const softmax = (logits) => {
        let top = -Infinity;
        for (const v of logits) top = Math.max(top, v);
        let sum = 0;
        const out = new Float64Array(logits.length);
        for (let j = 0; j < logits.length; j++) sum += (out[j] = Math.exp(logits[j] - top));
        for (let j = 0; j < out.length; j++) out[j] /= sum;
        return out;
    };
    // One head's three rows for query patch (row, col), each over the patches in row-major order
    const parts = (data, block, head, row, col) => {
        const [rows, cols] = data.grid, n = rows * cols, d = data.head_dim, i = row * cols + col;
        const q = block.queries, k = block.keys, base = head * n * d;
        const content = new Float64Array(n), positional = new Float64Array(n);
        const [wx, wy, wd] = block.pos_weight[head], bias = block.pos_bias[head];
        for (let j = 0; j < n; j++) {
            let dot = 0;
            for (let e = 0; e < d; e++) dot += q[base + i * d + e] * k[base + j * d + e];
            content[j] = dot * data.scale;
            const dx = (j % cols) - col, dy = Math.floor(j / cols) - row;
            positional[j] = wx * dx + wy * dy + wd * (dx * dx + dy * dy) + bias;
        }
        const c = softmax(content), p = softmax(positional), sigma = block.gates[head];
        const attention = c.map((v, j) => v + sigma * (p[j] - v));  // (torch.lerp, as the block mixes them)
        return {content: c, positional: p, attention, sigma};
    };
    const code = (data, weight) => {
        const [low, high] = data.log_range.map(Math.log10);
        const scaled = (Math.log10(Math.max(weight, 1e-12)) - low) / (high - low) * 255;
        return Math.min(255, Math.max(0, Math.round(scaled)));
    };
    const layout = (data) => {
        const [rows, cols] = data.grid, cell = Math.max(3, Math.floor(PANEL / Math.max(rows, cols)));
        const pw = cols * cell, ph = rows * cell, heads = data.heads;
        const mapsLeft = LEFT + pw + 3 * GAP;  // (the picture's column first)
        return {rows, cols, cell, pw, ph, mapsLeft, width: mapsLeft + heads * (pw + GAP) + 8,
                height: TOP + 3 * (ph + GAP) + BAR};
    };
    const draw = (data, blockIndex, patch, note, log, since) => {
        const canvas = document.getElementById('gpsa-canvas'), caption = document.getElementById('gpsa-caption');
        if (!canvas || !caption) return;
        const started = performance.now();
        const ctx = canvas.getContext('2d');
        const block = data.blocks.find((b) => b.block === blockIndex);
        if (!block) {
            canvas.width = canvas.height = 0;
            caption.textContent = data.blocks.length ?
                `${data.model}: block ${blockIndex} is not a GPSA block (GPSA blocks: ` +
                `${data.blocks.map((b) => b.block).join(', ')})` :
                `${data.model} has no GPSA blocks: this view is for ConViT models`;
            state.shown = null;
            return;
        }
        const {rows, cols, cell, pw, ph, mapsLeft, width, height} = layout(data), [row, col] = patch;
        canvas.width = width;
        canvas.height = height;
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, width, height);
        // what the model saw, at map size, the query framed
        const picture = new ImageData(pw, ph), bg = data.background, bgSide = data.background_cell;
        for (let y = 0; y < ph; y++) {
            for (let x = 0; x < pw; x++) {
                const g = ((Math.floor(y * bgSide / cell) * cols * bgSide) + Math.floor(x * bgSide / cell)) * 3;
                const o = (y * pw + x) * 4;
                picture.data[o] = bg[g];
                picture.data[o + 1] = bg[g + 1];
                picture.data[o + 2] = bg[g + 2];
                picture.data[o + 3] = 255;
            }
        }
        ctx.putImageData(picture, LEFT, TOP);
        const lut = log ? data.lut_log : data.lut_linear, heads = data.heads, shown = [];
        const maps = new ImageData(heads * (pw + GAP), 3 * (ph + GAP));
        maps.data.fill(255);
        for (let h = 0; h < heads; h++) {
            const part = parts(data, block, h, row, col);
            shown.push(part);
            ROWS.forEach(([, key], r) => {
                const weights = part[key];
                for (let j = 0; j < weights.length; j++) {
                    const c = code(data, weights[j]) * 3, kr = Math.floor(j / cols), kc = j % cols;
                    for (let y = 0; y < cell; y++) {
                        let o = (((r * (ph + GAP) + kr * cell + y) * maps.width) + h * (pw + GAP) + kc * cell) * 4;
                        for (let x = 0; x < cell; x++, o += 4) {
                            maps.data[o] = lut[c];
                            maps.data[o + 1] = lut[c + 1];
                            maps.data[o + 2] = lut[c + 2];
                        }
                    }
                }
            });
        }
        ctx.putImageData(maps, mapsLeft, TOP);
        ctx.strokeStyle = '#00ffff';
        ctx.lineWidth = 1;
        ctx.strokeRect(LEFT + col * cell + 0.5, TOP + row * cell + 0.5, cell - 1, cell - 1);
        for (let h = 0; h < heads; h++) {
            for (let r = 0; r < 3; r++) {
                ctx.strokeRect(mapsLeft + h * (pw + GAP) + col * cell + 0.5, TOP + r * (ph + GAP) + row * cell + 0.5,
                               cell - 1, cell - 1);
            }
        }
        ctx.font = '11px sans-serif';
        ctx.textBaseline = 'middle';
        ctx.textAlign = 'right';
        ROWS.forEach(([name, , colour], r) => {
            ctx.fillStyle = colour;
            ctx.fillText(name, LEFT - 6, TOP + r * (ph + GAP) + ph / 2);
        });
        ctx.fillStyle = '#000';
        ctx.textAlign = 'center';
        ctx.fillText('what the', LEFT + pw / 2, TOP + ph + 12);
        ctx.fillText('model saw', LEFT + pw / 2, TOP + ph + 25);
        for (let h = 0; h < heads; h++) {
            const x = mapsLeft + h * (pw + GAP) + pw / 2;
            ctx.fillText(`head ${h}`, x, 9);
            ctx.fillText(`σ(λ)=${block.gates[h].toFixed(2)}`, x, 23);
        }
        kit().colourBar(ctx, data, mapsLeft, TOP + 3 * (ph + GAP) + 8, 256, log);
        caption.textContent = `${note}${data.model}, GPSA block ${block.block}: attention of the ` +
            `${kit().label(row, col)} in every head, A = (1 − σ)·C + σ·P, computed and drawn in your browser from ` +
            `the block's queries, keys and positional weights (point at a map for its weight)`;
        state.shown = {data, block: block.block, row, col, parts: shown, cell, pw, ph, mapsLeft};
        const drawn = window.__gpsaDrawn, now = performance.now();
        // (for the tests and bench/browser_latency.py: what is shown, and the time it took)
        window.__gpsaDrawn = {block: block.block, row, col, log, draw_ms: now - started,
                              ms: now - (since === undefined ? started : since), at: now,
                              count: drawn ? drawn.count + 1 : 1};
    };
    // the page's listeners (app.tabs.gpsa) pass the data, the query box, the block and the scale
    window.__gpsaView = (text, query, block, log, since = performance.now()) => {
        const data = decoded(text);
        if (!data || !kit()) return;
        const args = JSON.stringify([query, block, log]);
        // (the query box's change after a click asks for what the click drew already)
        if (state.drawn && state.drawn.text === text && state.drawn.args === args) return;
        state.last = {text, block, log};
        let patch = kit().queryPatch(query, data), note = '';
        if (patch === null) return;  // (a query the box refuses: the page says so where it is typed)
        if (patch[0] === null) {  // GPSA blocks come before the class token joins: the centre patch instead
            patch = [data.grid[0] >> 1, data.grid[1] >> 1];
            note = 'The class token joins after the GPSA blocks: showing the centre patch. ';
        }
        draw(data, Math.round(Number(block)), patch, note, log, since);
        state.drawn = state.shown ? {text, args} : null;
    };
    // a click on the picture: the new query, drawn at once (before the server sets the query box)
    document.addEventListener('explorer-query', (event) => {
        const last = state.last;
        if (last) window.__gpsaView(last.text, event.detail.query, last.block, last.log, event.detail.at);
    });
    // for the equation (app/tabs/equation.js), which computes from the same data
    window.__gpsaKit = {decoded, parts, code};
    // for the tests: one head's parts as the page computes them
    window.__gpsaParts = (blockIndex, head, row, col) => {
        const data = state.data, block = data && data.blocks.find((b) => b.block === blockIndex);
        if (!block) return null;
        const part = parts(data, block, head, row, col);
        return {content: Array.from(part.content), positional: Array.from(part.positional),
                attention: Array.from(part.attention), sigma: part.sigma};
    };
    document.addEventListener('mousemove', (event) => {
        const shown = state.shown, out = document.getElementById('gpsa-value');
        if (!shown || !out || event.target.id !== 'gpsa-canvas') return;
        const r = event.target.getBoundingClientRect(), scale = event.target.width / r.width;
        const x = (event.clientX - r.left) * scale - shown.mapsLeft, y = (event.clientY - r.top) * scale - TOP;
        const h = Math.floor(x / (shown.pw + GAP)), part = Math.floor(y / (shown.ph + GAP));
        const kc = Math.floor((x - h * (shown.pw + GAP)) / shown.cell);
        const kr = Math.floor((y - part * (shown.ph + GAP)) / shown.cell);
        const [rows, cols] = shown.data.grid;
        if (h < 0 || h >= shown.parts.length || part < 0 || part > 2 || kc < 0 || kc >= cols || kr < 0 || kr >= rows) {
            out.textContent = 'Point at a map for its weight.';
            return;
        }
        const [name, key] = ROWS[part], weight = shown.parts[h][key][kr * cols + kc];
        out.textContent = `head ${h}, ${name}: key patch (row ${kr}, col ${kc}) gets ${weight.toFixed(5)}`;
    });
}
