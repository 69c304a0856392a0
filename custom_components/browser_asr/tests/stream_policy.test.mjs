// The browser's pacing policy (local_agreement.js): a bounded buffer, committed audio never decoded
// again, and "falling behind" when passes are slower than the audio. Pure: a scripted model.
import { test } from "node:test";
import assert from "node:assert/strict";
import { OnlineASRProcessor, SILENCE_KEEP_SECONDS, pacing, pacingText } from "../gradio_browser_asr/js/local_agreement.js";

const RATE = 16000;
const seconds = (s) => new Float32Array(Math.round(s * RATE));
const words = (...rows) => rows.map(([start, end, text]) => ({ start, end, text }));

// Feed `chunk` s per pass; the model "hears" one word per second of audio, each ending at its second.
async function stream(processor, passes, chunk = 1, hypothesis = null) {
  const heard = [];
  for (let i = 0; i < passes; i++) {
    processor.insertAudio(seconds(chunk));
    await processor.processIter(async (audio) => {
      heard.push(audio.length / RATE);
      const offset = processor.bufferTimeOffset;
      const n = Math.floor(audio.length / RATE);
      const all = Array.from({ length: n }, (_, k) => [k, k + 0.9, `w${Math.round(offset) + k}`]);
      return hypothesis ? hypothesis(all) : { words: words(...all), segmentEnds: [] };
    });
  }
  return heard;
}

test("without a bound the buffer grows when the model gives no segment end to cut at", async () => {
  const processor = new OnlineASRProcessor({ trimSeconds: 4 });
  const heard = await stream(processor, 20);
  assert.equal(heard.at(-1), 20); // every pass decodes the whole stream: passes (and the lag) grow
});

test("a bounded buffer is cut at the last committed word: no pass decodes more than the bound plus a chunk", async () => {
  const processor = new OnlineASRProcessor({ trimSeconds: 4, maxBufferSeconds: 6 });
  const heard = await stream(processor, 30);
  assert.ok(Math.max(...heard) <= 7, `passes heard ${heard}`);
  // The words come out once each, in order: the cut never loses or repeats committed text.
  const texts = processor.committed.map((w) => w.text);
  assert.deepEqual(texts, Array.from({ length: texts.length }, (_, k) => `w${k}`));
  assert.ok(texts.length >= 27, texts.join(" "));
  // The buffer starts where the last committed word ended: committed audio is not decoded again.
  assert.ok(processor.bufferTimeOffset <= processor.committed.at(-1).end + 1e-9);
});

test("silence (nothing committed or pending) keeps only the buffer's last seconds", async () => {
  const processor = new OnlineASRProcessor({ trimSeconds: 4, maxBufferSeconds: 6 });
  const heard = await stream(processor, 12, 1, () => ({ words: [], segmentEnds: [] }));
  assert.ok(Math.max(...heard) <= 7, `passes heard ${heard}`);
  assert.ok(processor.bufferSeconds <= SILENCE_KEEP_SECONDS + 1e-9);
  assert.equal(processor.committed.length, 0);
});

test("an unconfirmed tail is never cut away", async () => {
  // The model hears words but never repeats itself, so nothing is committed: the buffer stays.
  let pass = 0;
  const processor = new OnlineASRProcessor({ trimSeconds: 4, maxBufferSeconds: 6 });
  const heard = await stream(processor, 10, 1, (all) => ({ words: words(...all.map(([s, e, t]) => [s, e, `${t}-${pass++}`])), segmentEnds: [] }));
  assert.equal(heard.at(-1), 10);
  assert.equal(processor.bufferTimeOffset, 0);
});

test("segment ends inside the committed text are still the first place to cut", async () => {
  const processor = new OnlineASRProcessor({ trimSeconds: 4, maxBufferSeconds: 100 });
  await stream(processor, 8, 1, (all) => ({ words: words(...all), segmentEnds: all.map(([, end]) => end) }));
  assert.ok(processor.bufferTimeOffset > 0 && processor.bufferSeconds <= 6, `${processor.bufferTimeOffset} ${processor.bufferSeconds}`);
});

test("pacing: the audio that arrived during a pass, and falling behind once it passes a chunk and two seconds", () => {
  const fast = pacing({ streamSeconds: 10.8, heardSeconds: 10, minChunkSeconds: 1 });
  assert.ok(Math.abs(fast.behindSeconds - 0.8) < 1e-9 && !fast.fallingBehind);
  assert.equal(pacing({ streamSeconds: 12.9, heardSeconds: 10, minChunkSeconds: 1 }).fallingBehind, false);
  const slow = pacing({ streamSeconds: 15.5, heardSeconds: 12, minChunkSeconds: 1 });
  assert.equal(slow.fallingBehind, true);
  assert.equal(pacingText(slow), "falling behind: 3.5 s");
  assert.equal(pacing({ streamSeconds: 15.5, heardSeconds: 12, minChunkSeconds: 1, toleranceSeconds: 3 }).fallingBehind, false);
  assert.equal(pacingText(pacing({ streamSeconds: 3, heardSeconds: 3, minChunkSeconds: 1 })), "");
  assert.equal(pacing({ streamSeconds: 1, heardSeconds: 2, minChunkSeconds: 1 }).behindSeconds, 0);
});

test("the processor tracks what the last pass heard", async () => {
  const processor = new OnlineASRProcessor();
  processor.insertAudio(seconds(2));
  await processor.processIter(async () => {
    processor.insertAudio(seconds(1.5)); // arrives while the model runs
    return { words: [], segmentEnds: [] };
  });
  assert.equal(processor.heardSeconds, 2);
  assert.equal(processor.streamSeconds, 3.5);
});
