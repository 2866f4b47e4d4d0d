() => {
    // The dial's probe accuracy scored in this browser: the shipped ConViT's ONNX graphs (petl_core.export: the
    // stem, one graph per GPSA block with its gates σ as an input, the head) run by the vendored onnxruntime-web
    // (WASM) over the probe images the server prepared once (app/browser_files.py). The score shows first as an
    // estimate from the first images, with its 95% interval, then exact; a newer setting cancels the older one's
    // scoring. As petl_core.dial.DialProbe does, the streams entering each GPSA block are kept for the last two
    // settings, so a change of block k runs graphs k onward only.
    const MODELS = __MODELS__;  // the models whose graphs fit their weights (filled in by app/tabs/dial.py)
    const FIRST = 16, BATCH = 48;  // images in the first run (the first estimate rests on them), then per run
    const root = () => ((window.gradio_config && window.gradio_config.root) || location.origin).replace(/\/$/, '');
    const url = (path) => `${root()}/explorer/${path}`;
    const state = {runtime: null, models: {}, job: 0, shown: null, failed: null, reports: []};
    const fetched = async (path, as) => {
        const response = await fetch(url(path));
        if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
        return as === 'json' ? response.json() : response.arrayBuffer();
    };
    const runtime = () => state.runtime || (state.runtime = (async () => {
        const ort = await import(url('runtime/ort.wasm.bundle.min.mjs'));
        const packed = await fetch(url('runtime/ort-wasm-simd-threaded.wasm.gz'));
        if (!packed.ok) throw new Error(`the runtime: HTTP ${packed.status}`);
        ort.env.wasm.wasmBinary = await new Response(packed.body.pipeThrough(new DecompressionStream('gzip')))
            .arrayBuffer();
        // threads need a cross-origin-isolated page (a Space's iframe is not): one thread is the baseline; the
        // runtime works in a worker of its own (proxy), so the page stays responsive while it scores
        ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
        ort.env.wasm.proxy = true;
        return ort;
    })());
    const loaded = (name) => state.models[name] || (state.models[name] = (async () => {
        const ort = await runtime();
        const manifest = await fetched(`dial/${name}/dial.json`, 'json');
        const sessions = {};
        for (const file of manifest.graphs) {
            const bytes = new Uint8Array(await fetched(`dial/${name}/${file}`));
            sessions[file.replace(/\.onnx$/, '')] = await ort.InferenceSession.create(bytes,
                {executionProviders: ['wasm']});
        }
        const about = await fetched(`dial/${name}/probe.json`, 'json');
        const images = new Float32Array(await fetched(`dial/${name}/probe.bin`));
        return {ort, manifest, sessions, labels: about.labels, shape: about.shape, images, kept: []};
    })());
    // The gates JSON as the dial sends it (empty: as trained; per GPSA block null or one σ per head), as
    // Float32Array per block; null where it is not a setting of this model (the server's answer says why)
    const setting = (text, manifest) => {
        let value;
        try {
            value = text && text.trim() ? JSON.parse(text) : null;
        } catch (e) {
            return null;
        }
        const trained = manifest.trained_gates, heads = manifest.heads;
        if (value === null) value = trained.map(() => null);
        if (!Array.isArray(value) || value.length !== trained.length) return null;
        const gates = [];
        for (let k = 0; k < value.length; k++) {
            const entry = value[k] === null ? trained[k] : value[k];
            if (!Array.isArray(entry) || entry.length !== heads
                || !entry.every((v) => typeof v === 'number' && v >= 0 && v <= 1)) return null;
            gates.push(Float32Array.from(entry));
        }
        return gates;
    };
    // Top-1 accuracy over the probe, reported after each batch: report({correct, seen, total}); null if a newer
    // setting took over
    const score = async (name, text, report) => {
        const job = ++state.job;
        const model = await loaded(name);
        const gates = setting(text, model.manifest);
        if (gates === null || job !== state.job) return null;
        const key = gates.map((g) => Array.from(g).join(','));
        const total = model.labels.length;
        let shared = 0, from = null;
        for (const kept of model.kept) {
            let agree = 0;
            while (agree < key.length && kept.key[agree] === key[agree]) agree++;
            if (agree === key.length) {
                report({correct: kept.correct, seen: total, total});
                return kept.correct / total;
            }
            if (agree > shared) [shared, from] = [agree, kept];
        }
        const {ort, sessions, shape, images, labels} = model;
        const [, channels, size] = shape, per = channels * size * size, blocks = gates.length;
        const streams = [];  // per batch: the stream entering each GPSA block
        let correct = 0;
        const runs = [[0, Math.min(FIRST, total)]];  // [start, end) of each run's images
        while (runs[runs.length - 1][1] < total) {
            const start = runs[runs.length - 1][1];
            runs.push([start, Math.min(start + BATCH, total)]);
        }
        for (let b = 0; b < runs.length; b++) {
            const [start, end] = runs[b], n = end - start;
            let entering, x;
            if (shared) {
                entering = from.streams[b].slice(0, shared + 1);
                x = entering[shared];
            } else {
                const batch = new ort.Tensor('float32', images.slice(start * per, (start + n) * per),
                                             [n, channels, size, size]);
                x = (await sessions.stem.run({images: batch})).stream_out;
                entering = [x];
            }
            // (the worker takes each input's buffer: a kept stream goes in as a copy)
            const copy = (tensor) => new ort.Tensor('float32', tensor.data.slice(), tensor.dims);
            for (let k = shared; k < blocks; k++) {
                const sigma = new ort.Tensor('float32', gates[k].slice(), [gates[k].length]);
                x = (await sessions[`gpsa_${k}`].run({stream: copy(x), gates: sigma})).stream_out;
                if (k + 1 < blocks) entering.push(x);
            }
            const logits = (await sessions.head.run({stream: copy(x)})).logits, classes = logits.dims[1];
            for (let i = 0; i < n; i++) {
                let best = 0;
                for (let c = 1; c < classes; c++) {
                    if (logits.data[i * classes + c] > logits.data[i * classes + best]) best = c;
                }
                if (best === labels[start + i]) correct++;
            }
            streams.push(entering);
            if (job !== state.job) return null;
            report({correct, seen: start + n, total});
        }
        model.kept = [...model.kept, {key, streams, correct}].slice(-2);
        return correct / total;
    };
    const line = ({correct, seen, total}) => {
        const p = correct / seen;
        if (seen === total) {
            return `Probe accuracy with these gates: ${(100 * p).toFixed(1)}% on the first ${total} test images `
                + 'of its task (scored in this browser).';
        }
        // the first `seen` of the `total` images as a sample of them: a 95% interval (Agresti-Coull, so that 32 of
        // 32 right is not ± 0), narrowed for the finite population
        const q = (correct + 2) / (seen + 4);
        const half = 1.96 * Math.sqrt(q * (1 - q) / (seen + 4) * (total - seen) / (total - 1));
        return `Probe accuracy with these gates: about ${(100 * p).toFixed(0)}% ± ${(100 * half).toFixed(0)}% `
            + `(from the first ${seen} of ${total} images; scoring the rest…)`;
    };
    const show = (text) => {
        const element = document.querySelector('#dial-page-score');
        if (element) element.textContent = text;
    };
    const supported = typeof WebAssembly === 'object' && typeof DecompressionStream === 'function';
    window.__dialPage = {
        state, score, setting,
        // The dial listener's: while the Dial tab is shown, score `gates` of `model` when this page scores that
        // model. Returns the models this page scores (JSON, for the server's /dial: it leaves those to the page)
        update: (tab, model, gates) => {
            const scored = supported && !state.failed ? JSON.stringify(MODELS) : '';
            if (tab !== 'dial') return scored;
            state.shown = null;
            if (!scored || !MODELS.includes(model)) {
                state.job++;  // (a scoring of the model shown before stops reporting)
                show('');
                return scored;
            }
            show('Probe accuracy with these gates: scoring in this browser…');
            const started = performance.now();
            score(model, gates, (progress) => {
                state.shown = {...progress, model, gates, ms: performance.now() - started};
                state.reports.push(state.shown);
                show(line(progress));
            }).catch((e) => {  // the server scores from the next change on
                state.failed = String(e);
                show(`This browser could not score the probe (${e}); the server scores it from the next change.`);
            });
            return scored;
        },
    };
}
