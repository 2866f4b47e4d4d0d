() => {
    // The GPSA equation in numbers, computed and drawn in the page from the GPSA data the server sent once per
    // analysis (#equation-data, app.tabs.gpsa.GpsaView.data; the parts as app/tabs/gpsa.js computes them): for the
    // query, block and head, A_ij = (1 − σ)·C_ij + σ·P_ij with this image's numbers for the keys the head weighs
    // most and the sum over the others, and the three maps with those keys numbered. A model without GPSA (Convpass)
    // shows the server's view instead (#equation-server).
    const TOP_K = 5, SIDE = 240, LEFT = 24, TOP = 22, GAP = 16, BAR = 50;  // (maps large enough to read the keys)
    const COLOURS = {content: '#1f77b4', positional: '#d62728', attention: '#9467bd'};  // (equation.TERM_COLOURS)
    const f4 = (v) => v.toFixed(4);
    const term = (text, name) => `<span style="color:${COLOURS[name]}">${text}</span>`;
    const badge = (data, number) => `<span style="background:${data.key_colours[(number - 1) % data.key_colours
        .length]};color:white;border-radius:9px;padding:0 6px;font-weight:bold">${number}</span>`;
    const showServer = (server) => {
        const page = document.getElementById('equation-page'), other = document.getElementById('equation-server');
        if (page) page.style.display = server ? 'none' : '';
        if (other) other.style.display = server ? '' : 'none';
    };
    const table = (data, eq) => {
        const s = eq.sigma, [row, col] = eq.patch, c = term('C', 'content'), p = term('P', 'positional');
        const a = term('A', 'attention');
        const cells = (w) => `<td>${f4(1 - s)} × ${term(f4(w.content), 'content')}</td>` +
            `<td>+ ${f4(s)} × ${term(f4(w.positional), 'positional')}</td>` +
            `<td>= <b>${term(f4(w.attention), 'attention')}</b></td>`;
        const rows = eq.top.map((k, n) => `<tr><td>${badge(data, n + 1)}</td><td>(${k.patch[0]}, ${k.patch[1]})</td>` +
            `<td>(${k.patch[1] - col >= 0 ? '+' : ''}${k.patch[1] - col}, ${k.patch[0] - row >= 0 ? '+' : ''}` +
            `${k.patch[0] - row})</td>${cells(k)}</tr>`);
        rows.push(`<tr><td colspan="3">other ${eq.rest.keys} keys, summed</td>${cells(eq.rest)}</tr>`);
        const first = eq.top[0], fromContent = (1 - s) * first.content, fromPosition = s * first.positional;
        const winner = fromPosition > fromContent ? 'position' : 'content';
        return `${eq.note}<p><b>GPSA block ${eq.block}, head ${eq.head}, ${eq.label}.</b> A = (1 − σ)·${c} + σ·${p}, ` +
            `with this head's gate σ = σ(λ) = <b>${f4(s)}</b> (so 1 − σ = ${f4(1 - s)}).</p>` +
            `<table class="equation-table"><thead><tr><th>key</th><th>patch (row, col)</th><th>offset (dx, dy)</th>` +
            `<th>(1 − σ) · ${c}</th><th>+ σ · ${p}</th><th>= ${a}</th></tr></thead><tbody>${rows.join('')}` +
            `</tbody></table><p>Key ${badge(data, 1)} gets ${f4(first.attention)}: ${f4(fromContent)} from ` +
            `${term('content', 'content')} and ${f4(fromPosition)} from ${term('position', 'positional')}: most of ` +
            `its weight comes from ${winner}. Every row adds up. Computed in your browser from the block's queries, ` +
            `keys and positional weights.</p>`;
    };
    const drawMaps = (data, eq) => {
        const canvas = document.getElementById('equation-canvas');
        if (!canvas) return;
        const [rows, cols] = data.grid, cell = Math.max(4, Math.floor(SIDE / Math.max(rows, cols)));
        const pw = cols * cell, ph = rows * cell;
        canvas.width = LEFT + 3 * (pw + GAP) + 8;
        canvas.height = TOP + ph + BAR;
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = '#fff';
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        const s = eq.sigma, names = [[`content C (× 1 − σ = ${f4(1 - s)})`, 'content'],
                                     [`positional P (× σ = ${f4(s)})`, 'positional'],
                                     ['mixed A = (1 − σ)·C + σ·P', 'attention']];
        const lut = data.lut_log, [row, col] = eq.patch;
        ctx.font = '12px sans-serif';
        ctx.textAlign = 'center';
        ctx.textBaseline = 'middle';
        names.forEach(([title, key], m) => {
            const x0 = LEFT + m * (pw + GAP), image = new ImageData(pw, ph), weights = eq.maps[key];
            for (let j = 0; j < weights.length; j++) {
                const c = window.__gpsaKit.code(data, weights[j]) * 3, kr = Math.floor(j / cols), kc = j % cols;
                for (let y = 0; y < cell; y++) {
                    for (let x = 0, o = ((kr * cell + y) * pw + kc * cell) * 4; x < cell; x++, o += 4) {
                        image.data[o] = lut[c];
                        image.data[o + 1] = lut[c + 1];
                        image.data[o + 2] = lut[c + 2];
                        image.data[o + 3] = 255;
                    }
                }
            }
            ctx.putImageData(image, x0, TOP);
            ctx.fillStyle = COLOURS[key];
            ctx.fillText(title, x0 + pw / 2, TOP / 2);
            ctx.strokeStyle = '#00ffff';
            ctx.lineWidth = 2;
            ctx.strokeRect(x0 + col * cell + 1, TOP + row * cell + 1, cell - 2, cell - 2);
            eq.top.forEach((k, n) => {  // the keys of the table, numbered as there
                const cx = x0 + (k.patch[1] + 0.5) * cell, cy = TOP + (k.patch[0] + 0.5) * cell;
                ctx.beginPath();
                ctx.arc(cx, cy, Math.max(8, cell * 0.46), 0, 2 * Math.PI);
                ctx.fillStyle = data.key_colours[n % data.key_colours.length];
                ctx.fill();
                ctx.lineWidth = 1.5;
                ctx.strokeStyle = '#fff';
                ctx.stroke();
                ctx.fillStyle = '#fff';
                ctx.font = `bold ${Math.max(11, Math.round(cell * 0.6))}px sans-serif`;
                ctx.fillText(String(n + 1), cx, cy + 0.5);
                ctx.font = '12px sans-serif';
            });
        });
        window.__mapsKit.colourBar(ctx, data, LEFT, TOP + ph + 10, 256, true);  // (the fixed log scale, as the server's)
    };
    // the page's listeners (app.tabs.equation) pass the data, query, block and head; returns the numbers shown
    const state = {last: null, drawn: null};
    window.__equationView = (text, query, block, head, since = performance.now()) => {
        const kit = window.__gpsaKit, maps = window.__mapsKit;
        if (!kit || !maps) return null;
        const args = JSON.stringify([query, block, head]);
        // (the query box's change after a click asks for what the click drew already)
        if (state.drawn && state.drawn.text === text && state.drawn.args === args) return state.drawn.numbers;
        state.last = {text, block, head};
        const data = kit.decoded(text);
        if (!data || !data.blocks.length) {  // no GPSA: the server's view (Convpass, or the note that there is none)
            showServer(true);
            return null;
        }
        const entry = data.blocks.find((b) => b.block === Math.round(Number(block)));
        const written = document.getElementById('equation-page-text');
        showServer(false);
        if (!entry || !written) {
            if (written) written.textContent = `Block ${block} is not a GPSA block of ${data.model} (GPSA blocks: ` +
                `${data.blocks.map((b) => b.block).join(', ')}).`;
            return null;
        }
        let patch = maps.queryPatch(query, data), note = '';
        if (patch === null) return null;  // (a query the box refuses: the page says so where it is typed)
        if (patch[0] === null) {  // GPSA blocks come before the class token joins
            patch = [data.grid[0] >> 1, data.grid[1] >> 1];
            note = `<p>The class token joins after the GPSA blocks, so it has no GPSA equation: showing the ` +
                `${maps.label(patch[0], patch[1])} instead.</p>`;
        }
        const h = Math.min(Math.round(Number(head)), data.heads - 1), cols = data.grid[1];
        const part = kit.parts(data, entry, h, patch[0], patch[1]);
        const order = Array.from(part.attention.keys()).sort((i, j) => part.attention[j] - part.attention[i]);
        const weights = (j) => ({content: part.content[j], positional: part.positional[j],
                                 attention: part.attention[j]});
        const top = order.slice(0, TOP_K).map((j) => ({key: j, patch: [Math.floor(j / cols), j % cols],
                                                       ...weights(j)}));
        const rest = {keys: order.length - top.length, content: 0, positional: 0, attention: 0};
        for (const j of order.slice(TOP_K)) {
            for (const name of ['content', 'positional', 'attention']) rest[name] += part[name][j];
        }
        const eq = {block: entry.block, head: h, patch, label: maps.label(patch[0], patch[1]), sigma: part.sigma,
                    top, rest, note, maps: part};
        written.innerHTML = table(data, eq);
        drawMaps(data, eq);
        const mix = (w) => (1 - part.sigma) * w.content + part.sigma * w.positional;
        const numbers = {model: data.model, kind: 'gpsa', block: eq.block, head: h, query: `${patch[0]},${patch[1]}`,
                         sigma: part.sigma, computed: 'in the page, from /gpsa_data',
                         top: top.map((k, n) => ({number: n + 1, key: k.key, patch: k.patch,
                                                  offset_dx_dy: [k.patch[1] - patch[1], k.patch[0] - patch[0]],
                                                  content: k.content, positional: k.positional,
                                                  attention: k.attention, formula: mix(k)})),
                         rest: {...rest, formula: mix(rest)}};
        const drawn = window.__equationDrawn, now = performance.now();
        // (for the tests and bench/browser_latency.py)
        window.__equationDrawn = {block: eq.block, head: h, row: patch[0], col: patch[1], ms: now - since, at: now,
                                  count: drawn ? drawn.count + 1 : 1};
        state.drawn = {text, args, numbers};
        return numbers;
    };
    // a click on the picture: the new query, drawn at once (the numbers panel follows when the server sets the
    // query box)
    document.addEventListener('explorer-query', (event) => {
        const last = state.last;
        if (last) window.__equationView(last.text, event.detail.query, last.block, last.head, event.detail.at);
    });
}
