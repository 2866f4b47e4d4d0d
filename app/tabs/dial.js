() => {
    // The dial's probe accuracy scored in this browser: the shipped ConViT's ONNX graphs (petl_core.export: the
    // stem, one graph per GPSA block with its gates σ as an input, the head) run by the vendored onnxruntime-web
    // (WASM) over the probe images the server prepared once (app/browser_files.py). The score shows first as an
    // estimate from the first images, with its 95% interval, then exact; a newer setting cancels the older one's
    // scoring. The images are shared out among a few workers, each a one-thread runtime of its own (threads within
    // one runtime need a cross-origin-isolated page, which a Space's iframe is not; workers do not). As
    // petl_core.dial.DialProbe does, each worker keeps the streams entering each GPSA block of its images for the
    // last two settings, so a change of block k runs graphs k onward only.
    const MODELS = __MODELS__;  // the models whose graphs fit their weights (filled in by app/tabs/dial.py)
    const FIRST = 16, BATCH = 48;  // images the first estimate rests on, then about this many per run
    const WORKERS = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
    const root = () => ((window.gradio_config && window.gradio_config.root) || location.origin).replace(/\/$/, '');
    const url = (path) => `${root()}/explorer/${path}`;
    const state = {pool: null, about: {}, job: 0, jobs: {}, shown: null, failed: null, reports: [], workers: WORKERS,
                   weights: null};

    // A worker: {type: 'score', job, name, gates, runs} scores its runs ([start, end) of the probe) and posts
    // {job, run, correct, n} after each; a message with a newer job stops an older one between runs.
    const WORKER = `
        let latest = 0, ort = null, queue = Promise.resolve();  // (one job at a time: a session runs one call)
        const models = {};
        const fetched = async (url, as) => {
            const response = await fetch(url);
            if (!response.ok) throw new Error(url.split('/explorer/')[1] + ': HTTP ' + response.status);
            return as === 'json' ? response.json() : response.arrayBuffer();
        };
        const runtime = (base) => ort || (ort = (async () => {
            const module = await import(base + 'runtime/ort.wasm.bundle.min.mjs');
            const packed = await fetch(base + 'runtime/ort-wasm-simd-threaded.wasm.gz');
            if (!packed.ok) throw new Error('the runtime: HTTP ' + packed.status);
            module.env.wasm.wasmBinary = await new Response(
                packed.body.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
            module.env.wasm.numThreads = 1;
            module.env.wasm.proxy = false;
            return module;
        })());
        const loaded = (base, name) => models[name] || (models[name] = (async () => {
            const lib = await runtime(base);
            const manifest = await fetched(base + 'dial/' + name + '/dial.json', 'json');
            const sessions = {};
            for (const file of manifest.graphs) {
                const bytes = new Uint8Array(await fetched(base + 'dial/' + name + '/' + file));
                sessions[file.replace(/\\.onnx$/, '')] = await lib.InferenceSession.create(bytes,
                    {executionProviders: ['wasm']});
            }
            const about = await fetched(base + 'dial/' + name + '/probe.json', 'json');
            const images = new Float32Array(await fetched(base + 'dial/' + name + '/probe.bin'));
            return {lib, sessions, labels: about.labels, shape: about.shape, images, kept: []};
        })());
        const pause = () => new Promise((resolve) => setTimeout(resolve, 0));  // (lets a newer job's message in)
        const score = async ({job, base, name, gates, runs}) => {
            const model = await loaded(base, name);
            const key = gates.map((g) => g.join(','));
            let shared = 0, from = null;
            for (const kept of model.kept) {
                let agree = 0;
                while (agree < key.length && kept.key[agree] === key[agree]) agree++;
                if (agree === key.length) {
                    runs.forEach((run, i) => postMessage({job, run: run[2], correct: kept.correct[i],
                                                          n: run[1] - run[0]}));
                    return;
                }
                if (agree > shared) [shared, from] = [agree, kept];
            }
            const {lib, sessions, shape, images, labels} = model;
            const [, channels, size] = shape, per = channels * size * size, blocks = gates.length;
            const streams = [], correct = [];  // per run: the stream entering each GPSA block; images right
            for (let i = 0; i < runs.length; i++) {
                await pause();
                if (job !== latest) return;
                const [start, end, run] = runs[i], n = end - start;
                let entering, x;
                if (shared) {
                    entering = from.streams[i].slice(0, shared + 1);
                    x = entering[shared];
                } else {
                    const batch = new lib.Tensor('float32', images.subarray(start * per, end * per),
                                                 [n, channels, size, size]);
                    x = (await sessions.stem.run({images: batch})).stream_out;
                    entering = [x];
                }
                for (let k = shared; k < blocks; k++) {
                    const sigma = new lib.Tensor('float32', Float32Array.from(gates[k]), [gates[k].length]);
                    x = (await sessions['gpsa_' + k].run({stream: x, gates: sigma})).stream_out;
                    if (k + 1 < blocks) entering.push(x);
                }
                const logits = (await sessions.head.run({stream: x})).logits, classes = logits.dims[1];
                let right = 0;
                for (let j = 0; j < n; j++) {
                    let best = 0;
                    for (let c = 1; c < classes; c++) {
                        if (logits.data[j * classes + c] > logits.data[j * classes + best]) best = c;
                    }
                    if (best === labels[start + j]) right++;
                }
                streams.push(entering);
                correct.push(right);
                postMessage({job, run, correct: right, n});
            }
            model.kept = [...model.kept, {key, streams, correct}].slice(-2);
        };
        onmessage = ({data}) => {
            latest = Math.max(latest, data.job);
            if (data.type === 'score') {
                queue = queue.then(() => score(data)).catch((e) => postMessage({job: data.job, error: String(e)}));
            }
        };
    `;
    const receive = ({data}) => {
        const job = state.jobs[data.job];
        if (!job) return;
        if (data.error !== undefined) {
            delete state.jobs[data.job];
            job.reject(new Error(data.error));
            return;
        }
        if (job.done.has(data.run)) return;
        job.done.add(data.run);
        job.correct += data.correct;
        job.seen += data.n;
        const {correct, seen, total} = job;
        if (seen >= Math.min(FIRST, total)) job.report({correct, seen, total});
        if (job.seen === job.total) {
            delete state.jobs[data.job];
            job.resolve(job.correct / job.total);
        }
    };
    const pool = () => state.pool || (state.pool = (() => {
        const source = URL.createObjectURL(new Blob([WORKER], {type: 'text/javascript'}));
        return Array.from({length: WORKERS}, () => {
            const worker = new Worker(source, {type: 'module'});
            worker.onmessage = receive;
            worker.onerror = (event) => {  // (a worker that cannot start: its module or runtime failed to load)
                for (const [number, job] of Object.entries(state.jobs)) {
                    delete state.jobs[number];
                    job.reject(new Error(event.message || 'a scoring worker failed'));
                }
            };
            return worker;
        });
    })());
    const about = (name) => state.about[name] || (state.about[name] = (async () => {
        const fetched = async (path) => {
            const response = await fetch(url(path));
            if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
            return response.json();
        };
        const [manifest, probe] = await Promise.all([fetched(`dial/${name}/dial.json`),
                                                    fetched(`dial/${name}/probe.json`)]);
        return {manifest, total: probe.labels.length};
    })());
    // The runs of the probe's images, [start, end, index], dealt to the workers in turn: the first FIRST images in
    // one run per worker (the first estimate), the rest in runs of about BATCH, as many per worker
    const runs = (total) => {
        const all = [], cut = (from, to, parts) => {
            for (let p = 0; p < parts; p++) {
                const start = from + Math.round((to - from) * p / parts);
                const end = from + Math.round((to - from) * (p + 1) / parts);
                if (end > start) all.push([start, end, all.length]);
            }
        };
        const first = Math.min(FIRST, total);
        cut(0, first, WORKERS);
        cut(first, total, WORKERS * Math.ceil((total - first) / (BATCH * WORKERS)));
        return Array.from({length: WORKERS}, (_, w) => all.filter((run) => run[2] % WORKERS === w));
    };
    // The gates JSON as the dial sends it (empty: as trained; per GPSA block null or one σ per head), as one array
    // of σ per block; null where it is not a setting of this model (the server's answer says why)
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
            gates.push(Array.from(Float32Array.from(entry)));  // (as float32, the key of a kept setting)
        }
        return gates;
    };
    const stop = () => {  // the scoring under way stops reporting, and the workers drop it between runs
        const job = ++state.job;
        state.jobs = {};
        if (state.pool) state.pool.forEach((worker) => worker.postMessage({type: 'stop', job}));
        return job;
    };
    // Top-1 accuracy over the probe, reported as runs end: report({correct, seen, total}); null if a newer setting
    // took over
    const score = async (name, text, report) => {
        const job = stop();
        const {manifest, total} = await about(name);
        const gates = setting(text, manifest);
        if (gates === null || job !== state.job) return null;
        const workers = pool(), shares = runs(total);
        return new Promise((resolve, reject) => {
            state.jobs[job] = {total, correct: 0, seen: 0, done: new Set(), report, resolve, reject};
            workers.forEach((worker, w) => worker.postMessage({type: 'score', job, base: url(''), name, gates,
                                                               runs: shares[w]}));
        });
    };
    const line = ({correct, seen, total}) => {
        const p = correct / seen;
        if (seen === total) {
            return `Probe accuracy with these gates: ${(100 * p).toFixed(1)}% on the first ${total} test images `
                + 'of its task (scored in this browser).';
        }
        // the `seen` of the `total` images as a sample of them: a 95% interval (Agresti-Coull, so that 32 of 32
        // right is not ± 0), narrowed for the finite population
        const q = (correct + 2) / (seen + 4);
        const half = 1.96 * Math.sqrt(q * (1 - q) / (seen + 4) * (total - seen) / (total - 1));
        return `Probe accuracy with these gates: about ${(100 * p).toFixed(0)}% ± ${(100 * half).toFixed(0)}% `
            + `(from ${seen} of ${total} images; scoring the rest…)`;
    };
    const show = (text) => {
        const element = document.querySelector('#dial-page-score');
        if (element) element.textContent = text;
    };
    const failure = () => `This browser could not score the probe (${state.failed}); the server scores it from the `
        + 'next change on.';
    const supported = typeof WebAssembly === 'object' && typeof DecompressionStream === 'function'
        && typeof Worker === 'function';
    const available = () => supported && !state.failed;  // (else the server scores every model)
    window.__dialPage = {
        state, score, setting,
        // (then the server scores nothing): the page's graphs are the shipped weights', not an uploaded file's
        scores: (model) => available() && MODELS.includes(model) && !state.weights,
        // The dial listener's: while the Dial tab is shown, score `gates` of `model` when this page scores that
        // model (with its shipped weights: `weights`, the uploaded file, empty). Returns the models this page scores
        // (JSON, for the server's /dial: it leaves those to the page)
        update: (tab, model, gates, weights) => {
            state.weights = weights || null;
            const scored = available() && !state.weights ? JSON.stringify(MODELS) : '';
            if (tab !== 'dial') return scored;
            state.shown = null;
            if (!scored || !MODELS.includes(model)) {
                stop();  // (a scoring of the model shown before stops reporting)
                show(state.failed && MODELS.includes(model) ? failure() : '');
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
                show(failure());
            });
            return scored;
        },
    };
}
