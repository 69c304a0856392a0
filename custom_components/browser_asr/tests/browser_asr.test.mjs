// Pure parts of browser_asr.js: device choice, timed words from Whisper chunks, token metrics.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MAX_PASS_TOKENS, TAP_FRAMES, TAP_WORKLET, passTokenBudget, pickDevice, tokenMetrics, wordsFromChunks,
} from "../gradio_browser_asr/js/browser_asr.js";

const gpu = (adapter) => ({ requestAdapter: async () => adapter });

test("WebGPU only with a real adapter", async () => {
  assert.equal((await pickDevice("auto", gpu({ info: { isFallbackAdapter: false } }))).device, "webgpu");
  const fallback = await pickDevice("auto", gpu({ info: { isFallbackAdapter: true } }));
  assert.deepEqual(fallback, { device: "wasm", reason: "the WebGPU adapter is a software fallback" });
  assert.equal((await pickDevice("auto", gpu({ isFallbackAdapter: true }))).device, "wasm"); // older spec field
  assert.deepEqual(await pickDevice("auto", gpu(null)), { device: "wasm", reason: "no WebGPU adapter" });
  assert.deepEqual(await pickDevice("auto", undefined), { device: "wasm", reason: "this browser has no WebGPU" });
});

test("a forced choice is honoured, or refused with the reason", async () => {
  assert.equal((await pickDevice("wasm", gpu({ info: { isFallbackAdapter: false } }))).device, "wasm");
  assert.equal((await pickDevice("webgpu", gpu({ info: {} }))).device, "webgpu");
  await assert.rejects(pickDevice("webgpu", gpu(null)), /WebGPU was chosen but no WebGPU adapter/);
});

test("words share their segment's time by length; segment ends are kept", () => {
  const { words, segmentEnds } = wordsFromChunks(
    [{ timestamp: [0, 3], text: " ab abcd" }, { timestamp: [3, null], text: " x" }, { timestamp: [4, 5], text: " " }],
    4.5,
  );
  assert.deepEqual(words.map((w) => w.text), ["ab", "abcd", "x"]);
  assert.deepEqual(words.map((w) => [w.start, w.end]), [[0, 1], [1, 3], [3, 4.5]]); // open end: the audio's end
  assert.deepEqual(segmentEnds, [3, 4.5]); // an empty chunk adds nothing
  assert.deepEqual(wordsFromChunks(undefined, 1), { words: [], segmentEnds: [] });
});

test("TTFT is the first token's delay, ITL the mean gap", () => {
  const m = tokenMetrics(10, [10.5, 10.7, 11.1]);
  assert.equal(m.ttft_seconds, 0.5);
  assert.ok(Math.abs(m.itl_seconds - 0.3) < 1e-12);
  assert.equal(m.tokens, 3);
  assert.deepEqual(tokenMetrics(10, []), { ttft_seconds: null, itl_seconds: null, tokens: 0 });
});

test("a streaming pass's token budget grows with its audio, above speech rates, under Whisper's 448", () => {
  assert.equal(passTokenBudget(0), 16);
  assert.equal(passTokenBudget(1), 24);
  assert.ok(passTokenBudget(20) >= 20 * 6 + 8); // fast speech with a timestamp pair every 3 s
  assert.equal(passTokenBudget(30), 256);
  assert.equal(passTokenBudget(1000), MAX_PASS_TOKENS);
  assert.ok(MAX_PASS_TOKENS < 448);
});

test("the microphone tap posts mono audio TAP_FRAMES at a time, in order, with nothing lost", () => {
  // The worklet's source runs here against a stand-in for the AudioWorklet globals.
  const posted = [];
  let Tap = null;
  class AudioWorkletProcessor {
    constructor() {
      this.port = { postMessage: (data, transfer) => posted.push({ data, transfer }) };
    }
  }
  new Function("AudioWorkletProcessor", "registerProcessor", TAP_WORKLET)(AudioWorkletProcessor, (name, cls) => {
    assert.equal(name, "basr-tap");
    Tap = cls;
  });
  const tap = new Tap();
  const quanta = Math.ceil((2 * TAP_FRAMES + 100) / 128);
  for (let q = 0; q < quanta; q++) {
    const left = Float32Array.from({ length: 128 }, (_, i) => q * 128 + i);
    const right = left.map((x) => 3 * x); // the mean of the two channels is twice the sample's index
    assert.equal(tap.process([[left, right]]), true);
  }
  assert.equal(tap.process([]), true); // no input (a stopped track): nothing posted, still alive
  assert.equal(posted.length, 2);
  posted.forEach(({ data, transfer }, k) => {
    assert.equal(data.length, TAP_FRAMES);
    assert.deepEqual(transfer, [data.buffer]); // transferred, not copied
    assert.ok(data.every((x, i) => x === 2 * (k * TAP_FRAMES + i)), `message ${k}`);
  });
  assert.notEqual(posted[0].data, posted[1].data);
});
