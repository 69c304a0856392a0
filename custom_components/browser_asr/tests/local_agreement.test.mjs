// Runs every case of tests/vectors/local_agreement.json against the JS twin of
// explorer/local_agreement.py (tests/test_local_agreement.py runs the same file in Python).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import test from "node:test";

import {
  HypothesisBuffer,
  OnlineASRProcessor,
  agreementKey,
  commitLatency,
} from "../gradio_browser_asr/js/local_agreement.js";

const VECTORS = new URL("../../../tests/vectors/local_agreement.json", import.meta.url);
const { cases } = JSON.parse(readFileSync(VECTORS, "utf8"));

const close = (actual, expected, what) =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);
const toWords = (rows) => rows.map(([start, end, text]) => ({ start, end, text }));

// An expected word is its text, or [start, end, text] to check times too.
function checkWords(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: ${JSON.stringify(actual.map((w) => w.text))}`);
  expected.forEach((want, i) => {
    if (typeof want === "string") return assert.equal(actual[i].text, want, what);
    close(actual[i].start, want[0], `${what}[${i}].start`);
    close(actual[i].end, want[1], `${what}[${i}].end`);
    assert.equal(actual[i].text, want[2], what);
  });
}

function checkBufferState(buffer, expect, what) {
  if ("last_committed_time" in expect) close(buffer.lastCommittedTime, expect.last_committed_time, what);
  if ("last_committed_word" in expect) assert.equal(buffer.lastCommittedWord, expect.last_committed_word, what);
  if ("committed_in_buffer" in expect) checkWords(buffer.committedInBuffer, expect.committed_in_buffer, what);
}

function runHypothesisBuffer(steps, options = {}) {
  const buffer = new HypothesisBuffer({ anchorSeconds: options.anchor_seconds ?? null });
  steps.forEach((step, i) => {
    const what = `step ${i} (${step.op})`;
    if (step.op === "insert") buffer.insert(toWords(step.words), step.offset);
    else if (step.op === "flush") checkWords(buffer.flush(), step.expect, what);
    else if (step.op === "complete") checkWords(buffer.complete(), step.expect, what);
    else if (step.op === "pop_committed") buffer.popCommitted(step.time);
    else if (step.op === "force_before") checkWords(buffer.forceBefore(step.time), step.expect, what);
    else if (step.op === "state") checkBufferState(buffer, step.expect, what);
    else throw new Error(`unknown op ${step.op}`);
  });
}

function checkProcessor(processor, expect, what) {
  if ("buffer_time_offset" in expect) close(processor.bufferTimeOffset, expect.buffer_time_offset, what);
  if ("buffer_seconds" in expect) close(processor.bufferSeconds, expect.buffer_seconds, what);
  if ("all_committed" in expect) checkWords(processor.committed, expect.all_committed, what);
  if ("prompt" in expect) assert.equal(processor.prompt(), expect.prompt, what);
  if ("ready" in expect) assert.equal(processor.ready, expect.ready, what);
  if ("forced_words" in expect) assert.equal(processor.forcedWords, expect.forced_words, what);
}

async function runProcessor(steps, options = {}) {
  const processor = new OnlineASRProcessor({
    minChunkSeconds: options.min_chunk_seconds,
    trimSeconds: options.trim_seconds,
    sampleRate: options.sample_rate,
    anchorSeconds: options.anchor_seconds ?? null,
    maxUnconfirmedSeconds: options.max_unconfirmed_seconds ?? null,
  });
  for (const [i, step] of steps.entries()) {
    const what = `step ${i} (${step.op})`;
    if (step.op === "insert_audio") {
      processor.insertAudio(new Float32Array(Math.round(step.seconds * processor.sampleRate)));
      if ("expect_ready" in step) assert.equal(processor.ready, step.expect_ready, what);
    } else if (step.op === "process_iter") {
      const seen = {};
      const result = await processor.processIter(async (audio, prompt) => {
        Object.assign(seen, { audio, prompt });
        return { words: toWords(step.words), segmentEnds: step.segment_ends };
      });
      const { expect } = step;
      assert.ok(seen.audio instanceof Float32Array, what);
      if ("prompt" in expect) assert.equal(seen.prompt, expect.prompt, what);
      if ("audio_seconds" in expect) close(seen.audio.length / processor.sampleRate, expect.audio_seconds, what);
      if ("committed" in expect) checkWords(result.committed, expect.committed, `${what} committed`);
      if ("unconfirmed" in expect) checkWords(result.unconfirmed, expect.unconfirmed, `${what} unconfirmed`);
      checkProcessor(processor, expect, what);
    } else if (step.op === "finish") {
      const result = processor.finish();
      checkWords(result.committed, step.expect.committed, what);
      assert.deepEqual(result.unconfirmed, [], what);
    } else if (step.op === "state") checkProcessor(processor, step.expect, what);
    else if (step.op === "hypothesis_state") checkBufferState(processor.hypothesis, step.expect, what);
    else throw new Error(`unknown op ${step.op}`);
  }
}

function runCommitLatency({ events, stream_start: start, expect }) {
  const { firstCommitLatency, meanCommitLag } = commitLatency(events, start);
  for (const [got, want, what] of [
    [firstCommitLatency, expect.first_commit_latency, "first_commit_latency"],
    [meanCommitLag, expect.mean_commit_lag, "mean_commit_lag"],
  ]) {
    if (want === null) assert.equal(got, null, what);
    else close(got, want, what);
  }
}

test("the vectors cover every kind", () => {
  const kinds = new Set(cases.map((c) => c.kind));
  assert.deepEqual([...kinds].sort(), ["agreement_key", "commit_latency", "hypothesis_buffer", "processor"]);
});

for (const c of cases) {
  test(`${c.kind}: ${c.name}`, async () => {
    if (c.kind === "hypothesis_buffer") runHypothesisBuffer(c.steps, c.options);
    else if (c.kind === "processor") await runProcessor(c.steps, c.options);
    else if (c.kind === "commit_latency") runCommitLatency(c);
    else if (c.kind === "agreement_key") assert.deepEqual(c.pairs.map(([text]) => agreementKey(text)), c.pairs.map(([, key]) => key));
    else throw new Error(`unknown kind ${c.kind}`);
  });
}

test("the audio given to transcribe is a copy: later audio and cuts leave it alone", async () => {
  const processor = new OnlineASRProcessor({ trimSeconds: 1 });
  processor.insertAudio(Float32Array.from({ length: 32000 }, (_, i) => i));
  const words = [
    { start: 0.1, end: 0.5, text: "a" },
    { start: 0.6, end: 1.0, text: "b" },
  ];
  const audios = [];
  const transcribe = (audio) => {
    audios.push(audio);
    return { words, segmentEnds: [0.5, 1.0] };
  };
  await processor.processIter(transcribe);
  await processor.processIter(transcribe); // commits a, b and cuts at 0.5 s
  processor.insertAudio(new Float32Array(100));
  assert.equal(processor.bufferTimeOffset, 0.5);
  assert.equal(processor.audio.length, 32000 - 8000 + 100);
  assert.equal(processor.audio[0], 8000);
  assert.equal(audios[0].length, 32000);
  assert.equal(audios[1][0], 0);
});

test("words keep their other fields (e.g. probability)", () => {
  const buffer = new HypothesisBuffer();
  const words = [{ start: 0, end: 0.5, text: "hi", probability: 0.9 }];
  buffer.insert(words, 1);
  buffer.flush();
  buffer.insert(words, 1);
  assert.deepEqual(buffer.flush(), [{ start: 1, end: 1.5, text: "hi", probability: 0.9 }]);
  assert.deepEqual(words[0], { start: 0, end: 0.5, text: "hi", probability: 0.9 });
});
