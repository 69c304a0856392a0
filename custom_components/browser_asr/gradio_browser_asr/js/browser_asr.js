// In-browser speech recognition for gradio_browser_asr: transformers.js Whisper on WebGPU or WASM,
// a file mode and LocalAgreement-2 streaming from the microphone. The audio never leaves the page:
// only the final transcript and its metrics go to the server, as the component's value.
//
// mount() is called by the component's js_on_load with Gradio's element/props/trigger. Everything
// it needs arrives in config (props.config) (URLs the app serves: transformers.js, the onnxruntime-web wasm
// files, the local model folder; the model list; the streaming parameters).

import { OnlineASRProcessor, commitLatency, pacing, pacingText } from "./local_agreement.js";
import { Resampler, mixToMono, resampleTo16k } from "./audio_chunker.js";
import { rtfx as showRtfx, seconds as showSeconds } from "./display.js";

const RATE = 16000;
const now = () => performance.now() / 1000;

// -- pure helpers (tested with node --test) ------------------------------------------------------

// Whisper's timestamped chunks -> timed words. transformers.js' word timestamps need cross-attention
// outputs that these ONNX exports lack, so each word gets a share of its segment's time in
// proportion to its length: exact at segment boundaries, approximate inside.
export function wordsFromChunks(chunks, duration) {
  const words = [];
  const segmentEnds = [];
  for (const chunk of chunks || []) {
    const [start, rawEnd] = chunk.timestamp || [0, null];
    const end = rawEnd ?? duration;
    const parts = (chunk.text || "").split(/\s+/).filter(Boolean);
    const total = parts.reduce((n, p) => n + p.length, 0) || 1;
    let t = start;
    for (const text of parts) {
      const span = ((end - start) * text.length) / total;
      words.push({ start: t, end: t + span, text });
      t += span;
    }
    if (parts.length) segmentEnds.push(end);
  }
  return { words, segmentEnds };
}

export function tokenMetrics(start, tokenTimes) {
  const ttft = tokenTimes.length ? tokenTimes[0] - start : null;
  const n = tokenTimes.length;
  const itl = n > 1 ? (tokenTimes[n - 1] - tokenTimes[0]) / (n - 1) : null;
  return { ttft_seconds: ttft, itl_seconds: itl, tokens: n };
}

// The most tokens one streaming pass may generate over `seconds` of audio: well above speech
// (about 4 words, 6 tokens, a second, plus timestamps) and under Whisper's 448. Setting it also
// makes transformers.js 4.3 decode the window once: in timestamp mode without it, a pass whose
// last segment ends before the buffer does re-encodes the rest (a second 30 s encoder run, the
// larger part of a pass) and often hallucinates words over that short tail. A bound also stops a
// repetition loop from holding the device for hundreds of tokens.
export const MAX_PASS_TOKENS = 440;
// The microphone tap: mixes each 128-frame render quantum to mono and posts ~43 ms at a time
// (TAP_FRAMES at 48 kHz) as one transferred buffer, rather than a message per quantum (375 a
// second) to the main thread, where the passes run.
export const TAP_FRAMES = 2048;
export const TAP_WORKLET = `class Tap extends AudioWorkletProcessor {
  constructor() { super(); this.out = new Float32Array(${TAP_FRAMES}); this.n = 0; }
  process(inputs) {
    const c = inputs[0];
    if (!c || !c.length) return true;
    for (let i = 0; i < c[0].length; i++) {
      let x = 0;
      for (const channel of c) x += channel[i];
      this.out[this.n++] = x / c.length;
      if (this.n === this.out.length) {
        this.port.postMessage(this.out, [this.out.buffer]);
        this.out = new Float32Array(${TAP_FRAMES}); this.n = 0;
      }
    }
    return true;
  }
}
registerProcessor("basr-tap", Tap);`;

export function passTokenBudget(seconds) {
  return Math.min(MAX_PASS_TOKENS, Math.ceil(16 + 8 * seconds));
}

export function newRunId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// WebGPU only with a real adapter: a fallback (software) adapter is slower than WASM.
export async function pickDevice(choice, gpu = globalThis.navigator?.gpu) {
  if (choice === "wasm") return { device: "wasm", reason: "chosen" };
  let adapter = null;
  try {
    adapter = gpu ? await gpu.requestAdapter() : null;
  } catch (e) {
    adapter = null;
  }
  const fallback = adapter ? Boolean(adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter) : null;
  if (adapter && !fallback) return { device: "webgpu", reason: choice === "webgpu" ? "chosen" : "a WebGPU adapter is available" };
  const why = !gpu ? "this browser has no WebGPU" : !adapter ? "no WebGPU adapter" : "the WebGPU adapter is a software fallback";
  if (choice === "webgpu") throw new Error(`WebGPU was chosen but ${why}`);
  return { device: "wasm", reason: why };
}

// -- the component ---------------------------------------------------------------------------------

export function mount({ element, props, trigger, config }) {
  const cfg = config; // props.config with its URLs made absolute
  const $ = (cls) => element.querySelector(`.basr-${cls}`);
  const ui = {
    model: $("model"), device: $("device"), load: $("load"), file: $("file"), mic: $("mic"), stop: $("stop"),
    status: $("status"), committed: $("committed"), unconfirmed: $("unconfirmed"), metrics: $("metrics"), run: $("run"),
  };
  let T = null; // the transformers.js module
  let loaded = null; // {key, asr, device, reason, loadSeconds}
  let busy = false;
  let stream = null; // microphone state while streaming

  const say = (text) => (ui.status.textContent = text);
  const show = (committed, unconfirmed = "") => {
    ui.committed.textContent = committed;
    ui.unconfirmed.textContent = unconfirmed ? " " + unconfirmed : "";
  };
  // Metric cards as the server tabs show them; numbers in the app's one style (display.js).
  const showMetrics = (m) => {
    const cards = [
      ["Device", m.device.toUpperCase()], ...(m.device === "wasm" ? [["WASM threads", String(m.threads)]] : []),
      ["Load", showSeconds(m.load_seconds)], ["TTFT", showSeconds(m.ttft_seconds)],
      ["ITL", showSeconds(m.itl_seconds)], ["RTFx", showRtfx(m.rtfx)],
    ];
    if (m.first_commit_latency !== undefined) {
      cards.push(["first commit", showSeconds(m.first_commit_latency)], ["mean commit lag", showSeconds(m.mean_commit_lag)]);
    }
    ui.metrics.replaceChildren(...cards.map(([name, value]) => {
      const card = document.createElement("div");
      card.className = "basr-card";
      card.setAttribute("role", "listitem");
      card.innerHTML = '<div class="basr-card-name"></div><div class="basr-card-value"></div>';
      card.firstChild.textContent = name;
      card.lastChild.textContent = value;
      return card;
    }));
  };

  // WASM threads, and why not more: only a cross-origin-isolated page may share memory with workers.
  const threadsText = () => {
    const n = T ? T.env.backends.onnx.wasm.numThreads : 1;
    return self.crossOriginIsolated ? `WASM threads: ${n}` : `WASM threads: ${n}, page not cross-origin isolated`;
  };

  async function library() {
    if (T) return T;
    T = await import(cfg.transformers_url);
    T.env.backends.onnx.wasm.wasmPaths = cfg.wasm_url; // never the CDN default
    // Threads need SharedArrayBuffer, which only a cross-origin-isolated page has.
    T.env.backends.onnx.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    T.env.useBrowserCache = true; // model files go to the Cache API: the second load is fast
    // onnxruntime's proxy worker keeps the page live during a model call, but copies every call's
    // tensors between threads (the encoder's keys and values at each decoder step): passes were
    // 20-40 % slower with it here, so streaming has it off unless the app asks for it. Without
    // it the page still gets turns between decoder steps.
    T.env.backends.onnx.wasm.proxy = Boolean(cfg.wasm_proxy);
    return T;
  }

  async function load() {
    const spec = cfg.models.find((m) => m.key === ui.model.value);
    const choice = ui.device.value;
    if (loaded && loaded.key === spec.key && loaded.choice === choice) return loaded;
    const lib = await library();
    const { device, reason } = await pickDevice(choice);
    lib.env.allowLocalModels = Boolean(spec.local);
    lib.env.allowRemoteModels = !spec.local;
    lib.env.localModelPath = cfg.models_url;
    say(`loading ${spec.label} on ${device.toUpperCase()} (${reason})…`);
    const start = now();
    const files = {};
    const asr = await lib.pipeline("automatic-speech-recognition", spec.id, {
      device,
      dtype: spec.dtype,
      progress_callback: (p) => {
        if (p.status === "progress" && p.total) {
          files[p.file] = [p.loaded, p.total];
          const [got, all] = Object.values(files).reduce(([a, b], [x, y]) => [a + x, b + y], [0, 0]);
          say(`loading ${spec.label}: ${(got / 2 ** 20).toFixed(0)} / ${(all / 2 ** 20).toFixed(0)} MB`);
        }
      },
    });
    loaded = { key: spec.key, choice, asr, device, reason, loadSeconds: now() - start, spec };
    say(`${spec.label} ready on ${device.toUpperCase()} (${reason}; ${threadsText()})`);
    element.dataset.device = device;
    return loaded;
  }

  // One model call on 16 kHz audio; token times feed TTFT/ITL. A streaming pass decodes its
  // window once, within a token budget (passTokenBudget).
  async function transcribe(audio, tokenTimes, streaming = false) {
    const { asr } = loaded;
    const streamer = new T.WhisperTextStreamer(asr.tokenizer, {
      skip_prompt: true,
      skip_special_tokens: true,
      callback_function: () => {},
      token_callback_function: () => tokenTimes.push(now()),
    });
    const seconds = audio.length / RATE;
    const options = { return_timestamps: true, streamer };
    if (seconds > 30) Object.assign(options, { chunk_length_s: 30, stride_length_s: 5 });
    else if (streaming) options.max_new_tokens = passTokenBudget(seconds);
    return asr(audio, options);
  }

  function send(result) {
    const runId = newRunId();
    element.dataset.runId = runId; // shown to the user, and how an API client asks for this result
    ui.run.textContent = `run ${runId}`;
    props.value = { run_id: runId, ...result };
    trigger("change");
  }

  async function guarded(action) {
    if (busy) return;
    busy = true;
    try {
      await action();
    } catch (e) {
      say(`error: ${e.message || e}`);
      console.error(e);
    } finally {
      busy = false;
    }
  }

  // -- file mode: decoded and transcribed here; the file is never uploaded --------------------
  async function transcribeFile(file) {
    const model = await load();
    const bytes = await file.arrayBuffer();
    const context = new AudioContext();
    const decoded = await context.decodeAudioData(bytes);
    context.close();
    const channels = Array.from({ length: decoded.numberOfChannels }, (_, i) => decoded.getChannelData(i));
    const audio = resampleTo16k(mixToMono(channels), decoded.sampleRate);
    const seconds = audio.length / RATE;
    say(`transcribing ${file.name} (${showSeconds(seconds)}) on ${model.device.toUpperCase()}…`);
    show("", "");
    const tokenTimes = [];
    const start = now();
    const out = await transcribe(audio, tokenTimes);
    const processing = now() - start;
    const text = (out.text || "").trim();
    show(text);
    const metrics = {
      ...tokenMetrics(start, tokenTimes), device: model.device, load_seconds: model.loadSeconds,
      processing_seconds: processing, audio_seconds: seconds, rtfx: processing > 0 ? seconds / processing : null,
      threads: T.env.backends.onnx.wasm.numThreads,
    };
    showMetrics(metrics);
    say(`done: ${file.name} on ${model.device.toUpperCase()}`);
    model.loadSeconds = 0; // counted once, on the first run after loading
    send({ mode: "file", model: model.spec.key, device: model.device, text, metrics, file: file.name });
  }

  // -- microphone: LocalAgreement-2 over a growing buffer ---------------------------------------
  async function startMic() {
    const model = await load();
    const media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    const context = new AudioContext();
    const url = URL.createObjectURL(new Blob([TAP_WORKLET], { type: "text/javascript" }));
    await context.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const source = context.createMediaStreamSource(media);
    const node = new AudioWorkletNode(context, "basr-tap");
    const mute = context.createGain();
    mute.gain.value = 0;
    source.connect(node).connect(mute).connect(context.destination); // pulled, but silent
    const processor = new OnlineASRProcessor({
      minChunkSeconds: cfg.min_chunk_seconds, trimSeconds: cfg.trim_seconds, maxBufferSeconds: cfg.max_buffer_seconds,
      anchorSeconds: cfg.anchor_seconds ?? null, maxUnconfirmedSeconds: cfg.max_unconfirmed_seconds ?? null,
    });
    const resampler = new Resampler(context.sampleRate, RATE);
    const s = { media, context, processor, start: now(), events: [], tokenTimes: [], processing: 0, iterations: 0, running: true };
    stream = s;
    node.port.onmessage = (e) => {
      if (s.running) processor.insertAudio(resampler.push(e.data));
    };
    ui.mic.disabled = true;
    ui.stop.disabled = false;
    show("", "");
    s.listening = `listening on ${model.device.toUpperCase()} (${model.reason}; ${threadsText()}): committed text is final, grey text may still change`;
    say(s.listening);
    s.loop = (async () => {
      while (s.running) {
        if (processor.ready) await step(s);
        else await new Promise((r) => setTimeout(r, 50));
      }
    })();
  }

  async function step(s) {
    const t0 = now();
    const result = await s.processor.processIter(async (audio) => {
      s.maxBuffer = Math.max(s.maxBuffer || 0, audio.length / RATE);
      const out = await transcribe(audio, s.tokenTimes, true);
      return wordsFromChunks(out.chunks, audio.length / RATE);
    });
    s.maxPass = Math.max(s.maxPass || 0, now() - t0);
    s.processing += now() - t0;
    s.iterations += 1;
    const committedAt = now();
    // [emission s since the stream started, word end s in the stream, word]: word latency, server side.
    for (const w of result.committed) s.events.push([committedAt - s.start, w.end, w.text]);
    show(s.processor.committed.map((w) => w.text).join(" "), result.unconfirmed.map((w) => w.text).join(" "));
    element.dataset.iterations = String(s.iterations);
    const pace = pacing({ streamSeconds: s.processor.streamSeconds, heardSeconds: s.processor.heardSeconds, minChunkSeconds: cfg.min_chunk_seconds });
    s.behindMax = Math.max(s.behindMax || 0, pace.fallingBehind ? pace.behindSeconds : 0);
    if (s.running) say(pace.fallingBehind ? `${pacingText(pace)} (this device is slower than the audio) · ${s.listening}` : s.listening);
  }

  async function stopMic() {
    const s = stream;
    if (!s) return;
    s.running = false;
    s.media.getTracks().forEach((t) => t.stop());
    await s.loop;
    if (s.processor._unprocessed > 0) await step(s); // what arrived after the last pass
    const audioSeconds = s.processor.bufferTimeOffset + s.processor.bufferSeconds;
    const committed = [...s.processor.committed];
    const forcedWords = s.processor.forcedWords;
    const tail = s.processor.finish(); // the last hypothesis' unconfirmed words become final (and reset)
    const flushedAt = now() - s.start;
    for (const w of tail.committed) s.events.push([flushedAt, w.end, w.text]);
    const text = [...committed, ...tail.committed].map((w) => w.text).join(" ").trim();
    s.context.close();
    stream = null;
    ui.mic.disabled = false;
    ui.stop.disabled = true;
    show(text);
    const latency = commitLatency(s.events, 0); // events are already in stream time
    const metrics = {
      ...tokenMetrics(s.start, s.tokenTimes), device: loaded.device, load_seconds: loaded.loadSeconds,
      processing_seconds: s.processing, audio_seconds: audioSeconds, rtfx: s.processing > 0 ? audioSeconds / s.processing : null,
      first_commit_latency: latency.firstCommitLatency, mean_commit_lag: latency.meanCommitLag, iterations: s.iterations,
      threads: T.env.backends.onnx.wasm.numThreads, max_behind_seconds: s.behindMax || 0,
      mean_pass_seconds: s.iterations ? s.processing / s.iterations : null, max_pass_seconds: s.maxPass || null,
      max_buffer_seconds: s.maxBuffer || null, forced_words: forcedWords,
    };
    loaded.loadSeconds = 0;
    showMetrics(metrics);
    say(`stopped: ${s.iterations} passes over the buffer`);
    send({ mode: "stream", model: loaded.spec.key, device: loaded.device, text, metrics, events: s.events });
  }

  ui.load.addEventListener("click", () => guarded(load));
  ui.file.addEventListener("change", () => {
    const file = ui.file.files[0];
    if (file) guarded(() => transcribeFile(file));
  });
  ui.mic.addEventListener("click", () => guarded(startMic));
  ui.stop.addEventListener("click", () => stopMic().catch((e) => say(`error: ${e.message || e}`)));
  ui.stop.disabled = true;
  say(`pick a model, then a file or the microphone (${self.crossOriginIsolated ? "threads available" : "single-threaded WASM: page not cross-origin isolated"})`);
}
