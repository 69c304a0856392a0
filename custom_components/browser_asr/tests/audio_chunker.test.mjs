import assert from "node:assert/strict";
import test from "node:test";

import { Chunker, Resampler, mixToMono, resampleTo16k } from "../gradio_browser_asr/js/audio_chunker.js";

const tone = (hz, rate, seconds, amplitude = 1) =>
  Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => amplitude * Math.sin((2 * Math.PI * hz * i) / rate));
const middle = (x) => x.subarray(Math.floor(x.length * 0.1), Math.floor(x.length * 0.9)); // away from the edges
const rms = (x) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
const peak = (x) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const zeroCrossings = (x) => {
  let n = 0;
  for (let i = 1; i < x.length; i++) if ((x[i - 1] < 0) !== (x[i] < 0)) n++;
  return n;
};
const concat = (parts) => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
};

for (const rate of [48000, 44100, 22050]) {
  test(`a 440 Hz tone at ${rate} Hz keeps its frequency and amplitude at 16 kHz`, () => {
    const out = resampleTo16k(tone(440, rate, 1), rate);
    assert.equal(out.length, 16000);
    const crossings = zeroCrossings(out);
    assert.ok(Math.abs(crossings - 880) <= 2, `zero crossings: ${crossings}`);
    const m = middle(out);
    assert.ok(Math.abs(peak(m) - 1) < 0.01, `peak ${peak(m)}`);
    assert.ok(Math.abs(rms(m) - Math.SQRT1_2) < 0.01, `rms ${rms(m)}`);
    // It is the same tone, sample for sample, not only the same level.
    const expected = middle(tone(440, 16000, 1));
    const worst = m.reduce((w, v, i) => Math.max(w, Math.abs(v - expected[i])), 0);
    assert.ok(worst < 0.01, `largest difference ${worst}`);
  });
}

test("a 12 kHz tone at 48 kHz is filtered out, not aliased to 4 kHz", () => {
  const out = resampleTo16k(tone(12000, 48000, 1), 48000);
  assert.equal(out.length, 16000);
  assert.ok(rms(out) < 0.1, `rms ${rms(out)}`);
  assert.ok(rms(middle(out)) < 0.001, `rms ${rms(middle(out))}`);
});

test("a 10 kHz tone at 44.1 kHz is filtered out too", () => {
  const out = resampleTo16k(tone(10000, 44100, 1), 44100);
  assert.ok(rms(middle(out)) < 0.001, `rms ${rms(middle(out))}`);
});

test("a 6 kHz tone, inside the passband, passes", () => {
  const out = middle(resampleTo16k(tone(6000, 48000, 1), 48000));
  assert.ok(Math.abs(rms(out) - Math.SQRT1_2) < 0.02, `rms ${rms(out)}`);
});

test("output lengths: ceil(input x 16000 / rate)", () => {
  for (const [rate, length, expected] of [
    [48000, 48000, 16000],
    [44100, 44100, 16000],
    [44100, 1000, 363],
    [22050, 22050, 16000],
    [8000, 8000, 16000],
    [8000, 3, 6],
    [16000, 1234, 1234],
    [48000, 0, 0],
    [48000, 1, 1],
  ]) {
    assert.equal(resampleTo16k(new Float32Array(length), rate).length, expected, `${length} samples at ${rate} Hz`);
  }
});

test("identity at 16 kHz, as a copy", () => {
  const x = tone(440, 16000, 0.1);
  const out = resampleTo16k(x, 16000);
  assert.deepEqual(out, x);
  assert.notEqual(out, x);
});

test("upsampling interpolates linearly", () => {
  assert.deepEqual(Array.from(resampleTo16k(Float32Array.from([0, 1, 0, -1]), 8000)), [0, 0.5, 1, 0.5, 0, -0.5, -1, -0.5]);
  const out = resampleTo16k(tone(440, 8000, 1), 8000);
  assert.ok(Math.abs(zeroCrossings(out) - 880) <= 2);
});

test("a constant level is kept", () => {
  const out = middle(resampleTo16k(new Float32Array(48000).fill(0.5), 48000));
  assert.ok(out.every((v) => Math.abs(v - 0.5) < 1e-6));
});

test("streaming in pieces gives exactly the whole-signal result", () => {
  for (const rate of [48000, 44100, 8000]) {
    const x = tone(440, rate, 0.5);
    const resampler = new Resampler(rate);
    const parts = [];
    const sizes = [128, 7, 1000, 1, 4096];
    for (let at = 0, i = 0; at < x.length; i++) {
      const size = sizes[i % sizes.length];
      parts.push(resampler.push(x.subarray(at, at + size)));
      at += size;
    }
    parts.push(resampler.flush());
    assert.deepEqual(concat(parts), resampleTo16k(x, rate), `${rate} Hz`);
  }
});

test("the resampler starts over after flush", () => {
  const resampler = new Resampler(48000);
  const x = tone(440, 48000, 0.1);
  const first = concat([resampler.push(x), resampler.flush()]);
  const second = concat([resampler.push(x), resampler.flush()]);
  assert.deepEqual(second, first);
});

test("bad rates are refused", () => {
  assert.throws(() => resampleTo16k(new Float32Array(4), 0), RangeError);
  assert.throws(() => new Resampler(Number.NaN), RangeError);
});

test("mixToMono averages the channels", () => {
  const left = Float32Array.from([1, 0.5, -1]);
  const right = Float32Array.from([0, 0.5, 1]);
  assert.deepEqual(Array.from(mixToMono([left, right])), [0.5, 0.5, 0]);
  const mono = mixToMono([left]);
  assert.deepEqual(mono, left);
  assert.notEqual(mono, left);
  assert.equal(mixToMono([]).length, 0);
  assert.throws(() => mixToMono([left, new Float32Array(2)]), RangeError);
});

test("the chunker emits once a min-chunk of new audio has arrived", () => {
  const chunker = new Chunker(); // 1 s at 16 kHz
  const block = (value) => new Float32Array(4096).fill(value);
  assert.deepEqual([1, 2, 3, 4].map((v) => chunker.push(block(v))), [false, false, false, true]); // 16384 >= 16000
  const chunk = chunker.take();
  assert.equal(chunk.length, 16384);
  assert.deepEqual([chunk[0], chunk[4096], chunk[8192], chunk[16383]], [1, 2, 3, 4]);
  assert.equal(chunker.pending, 0);
  assert.equal(chunker.push(new Float32Array(15999)), false);
  assert.equal(chunker.push(new Float32Array(1)), true); // exactly 16000
  assert.equal(chunker.take().length, 16000);
  assert.equal(chunker.take().length, 0);
});

test("the chunker copies what it is given and honours its own size and rate", () => {
  const chunker = new Chunker(0.5, 48000); // 24000 samples
  const reused = new Float32Array(12000).fill(1);
  assert.equal(chunker.push(reused), false);
  reused.fill(2); // Web Audio reuses its buffers
  assert.equal(chunker.push(reused), true);
  const chunk = chunker.take();
  assert.deepEqual([chunk.length, chunk[0], chunk[12000]], [24000, 1, 2]);
  assert.equal(chunker.push([]), false);
});
