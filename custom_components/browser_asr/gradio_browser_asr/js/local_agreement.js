// LocalAgreement-2 streaming policy, after ufal/whisper_streaming: no model, no clock.
//
// The audio buffer grows; every call transcribes all of it, and a word is committed once two
// consecutive hypotheses agree on it (their longest common prefix). When the buffer passes
// trimSeconds it is cut at the end of a model segment that lies inside the committed text.
//
// Twin of explorer/local_agreement.py (same names in snake_case, same behaviour); both run the
// cases in tests/vectors/local_agreement.json. Words are {start, end, text} in seconds. The
// options anchorSeconds and maxUnconfirmedSeconds (HypothesisBuffer.anchor, OnlineASRProcessor)
// are off by default, as in whisper_streaming; the Browser tab turns both on.

export const SAMPLE_RATE = 16000;
export const MAX_NGRAM = 5; // longest run of already committed words dropped from a new hypothesis
export const PROMPT_CHARS = 200; // size of the committed text passed to the model as a prompt
export const TIME_SLACK = 0.1; // new words may start this much before the last committed time

const texts = (words) => words.map((w) => w.text.trim());

// What two hypotheses must share for a word to agree: its text without surrounding whitespace,
// punctuation or symbols, in lower case. Whisper ends the last word it hears with a period
// ("man.") and writes it plain once the next words follow: compared exactly, that word waited one
// more pass. The newer hypothesis' form is the one committed.
const EDGE_MARKS = /^[\p{P}\p{S}]+|[\p{P}\p{S}]+$/gu;
export const agreementKey = (text) => text.trim().replace(EDGE_MARKS, "").toLowerCase();
const keys = (words) => words.map((w) => agreementKey(w.text));
const sameKeys = (a, b) => a.length === b.length && a.every((t, i) => t === b[i]);

export class HypothesisBuffer {
  // anchorSeconds: null (whisper_streaming's time filter only), or how far from the last committed
  // time a text anchor may end (see anchor()).
  constructor({ anchorSeconds = null } = {}) {
    this.anchorSeconds = anchorSeconds;
    this.committedInBuffer = []; // committed words still inside the audio buffer
    this.buffer = []; // the previous hypothesis' uncommitted tail
    this.new = []; // the latest hypothesis
    this.lastCommittedTime = 0;
    this.lastCommittedWord = null;
  }

  // Take a hypothesis with times relative to the audio buffer, which starts at `offset`.
  insert(words, offset) {
    const shifted = words.map((w) => ({ ...w, start: w.start + offset, end: w.end + offset }));
    const anchor = this.anchor(shifted);
    if (anchor !== null) {
      this.new = shifted.slice(anchor);
      return;
    }
    this.new = shifted.filter((w) => w.start > this.lastCommittedTime - TIME_SLACK);
    const committed = this.committedInBuffer;
    if (this.new.length && committed.length && Math.abs(this.new[0].start - this.lastCommittedTime) < 1) {
      // The model may transcribe the end of the committed text again: drop it (1..5 words).
      const most = Math.min(committed.length, this.new.length, MAX_NGRAM);
      for (let n = 1; n <= most; n++) {
        if (sameKeys(keys(committed.slice(-n)), keys(this.new.slice(0, n)))) {
          this.new.splice(0, n);
          break;
        }
      }
    }
  }

  // Where the new words begin, found by text: just after the last 2..MAX_NGRAM committed words
  // still in the buffer, transcribed again, ending within anchorSeconds of the last committed
  // time (the longest such run, then the nearest). null when there is none or anchoring is off:
  // the time filter decides. Word times interpolated inside a segment (transformers.js) move by a
  // few tenths of a second from pass to pass, so the time filter alone let the first new word in
  // on one pass and not the next, and the two hypotheses disagreed until the buffer was cut. The
  // cost: a phrase repeated at once ("no no no no") may lose a repetition.
  anchor(words) {
    if (this.anchorSeconds === null) return null;
    const committed = keys(this.committedInBuffer);
    const heard = keys(words);
    for (let n = Math.min(MAX_NGRAM, committed.length); n >= 2; n--) {
      const tail = committed.slice(-n);
      let best = null;
      for (let i = 0; i + n <= words.length; i++) {
        const distance = Math.abs(words[i + n - 1].end - this.lastCommittedTime);
        if (distance <= this.anchorSeconds && sameKeys(heard.slice(i, i + n), tail) && (best === null || distance < best.distance)) {
          best = { at: i + n, distance };
        }
      }
      if (best !== null) return best.at;
    }
    return null;
  }

  // Commit and return the words on which the latest hypothesis agrees with the previous one.
  flush() {
    const commit = [];
    for (let i = 0; i < Math.min(this.new.length, this.buffer.length); i++) {
      if (agreementKey(this.new[i].text) !== agreementKey(this.buffer[i].text)) break;
      commit.push(this.new[i]);
    }
    this.buffer = this.new.slice(commit.length);
    this.new = [];
    return this._record(commit);
  }

  // Note words as committed (in order) and return them.
  _record(words) {
    if (words.length) {
      this.lastCommittedTime = words[words.length - 1].end;
      this.lastCommittedWord = words[words.length - 1].text;
      this.committedInBuffer.push(...words);
    }
    return words;
  }

  // Commit the unconfirmed words, from the first, that end at or before `time`: the latest
  // hypothesis' form, without a second one agreeing (OnlineASRProcessor's maxUnconfirmedSeconds).
  forceBefore(time) {
    const forced = [];
    while (this.buffer.length && this.buffer[0].end <= time) forced.push(this.buffer.shift());
    return this._record(forced);
  }

  // Forget committed words that end at or before `time` (their audio was cut).
  popCommitted(time) {
    while (this.committedInBuffer.length && this.committedInBuffer[0].end <= time) this.committedInBuffer.shift();
  }

  // The words not yet confirmed.
  complete() {
    return this.buffer.slice();
  }
}

// The growing audio buffer and the committed words; the caller brings the model.
// Call processIter whenever `ready` (at least minChunkSeconds of new audio), and finish() at the end.
//
// maxBufferSeconds bounds the audio one pass decodes, so a pass's time stays bounded and the lag
// with it: past it, when no segment end inside the committed text allowed a cut, the buffer is cut
// at the last committed word's end (committed audio is not decoded again), and a buffer with
// nothing committed or pending in it (silence) keeps only its last SILENCE_KEEP_SECONDS. The
// default, Infinity, is whisper_streaming's behaviour (and the Python twin's).
//
// maxUnconfirmedSeconds bounds how long a word may wait for a second hypothesis to agree: once the
// audio a pass heard runs that far past a word's end, the latest hypothesis' form of it is
// committed (counted in forcedWords). Two hypotheses of a tiny model can disagree for many passes
// on the first words after a cut ("And Mr." / "Mr."), and every word behind them waits. The
// default, null, is whisper_streaming's behaviour: agreement only.
export const SILENCE_KEEP_SECONDS = 2;

export class OnlineASRProcessor {
  constructor({ minChunkSeconds = 1.0, trimSeconds = 15, maxBufferSeconds = Infinity, anchorSeconds = null,
    maxUnconfirmedSeconds = null, sampleRate = SAMPLE_RATE } = {}) {
    this.minChunkSeconds = minChunkSeconds;
    this.anchorSeconds = anchorSeconds;
    this.maxUnconfirmedSeconds = maxUnconfirmedSeconds;
    this.trimSeconds = trimSeconds;
    this.maxBufferSeconds = maxBufferSeconds;
    this.sampleRate = sampleRate;
    this.reset();
  }

  reset() {
    this._samples = new Float32Array(0); // storage; the buffer is its first audioLength samples
    this.audioLength = 0;
    this.bufferTimeOffset = 0; // stream time of the buffer's first sample
    this.hypothesis = new HypothesisBuffer({ anchorSeconds: this.anchorSeconds });
    this.committed = [];
    this._unprocessed = 0; // samples inserted since the last processIter
    this.heardSeconds = 0; // stream time up to which the last pass heard the audio
    this.forcedWords = 0; // words committed by maxUnconfirmedSeconds rather than by agreement
  }

  // Stream time of the newest sample received.
  get streamSeconds() {
    return this.bufferTimeOffset + this.bufferSeconds;
  }

  get audio() {
    return this._samples.slice(0, this.audioLength);
  }

  get bufferSeconds() {
    return this.audioLength / this.sampleRate;
  }

  get ready() {
    return this._unprocessed >= Math.round(this.minChunkSeconds * this.sampleRate);
  }

  insertAudio(samples) {
    const length = this.audioLength + samples.length;
    if (length > this._samples.length) {
      const grown = new Float32Array(Math.max(length, 2 * this._samples.length));
      grown.set(this._samples.subarray(0, this.audioLength));
      this._samples = grown;
    }
    this._samples.set(samples, this.audioLength);
    this.audioLength = length;
    this._unprocessed += samples.length;
  }

  // The last ~200 characters of committed text whose audio is no longer in the buffer.
  prompt() {
    const before = texts(this.committed.filter((w) => w.end <= this.bufferTimeOffset));
    const picked = [];
    let size = 0;
    while (before.length && size < PROMPT_CHARS) {
      const text = before.pop();
      picked.push(text);
      size += text.length + 1;
    }
    return picked.reverse().join(" ");
  }

  // Transcribe the buffer (a copy of it) and apply the result. `transcribe(audio, prompt)` may be
  // async and returns {words, segmentEnds} with times relative to the buffer's start.
  async processIter(transcribe) {
    this._unprocessed = 0;
    this.heardSeconds = this.streamSeconds;
    return this.applyHypothesis(await transcribe(this.audio, this.prompt()));
  }

  // The policy step of processIter, for callers that run the model themselves.
  applyHypothesis({ words = [], segmentEnds = [] }) {
    this.hypothesis.insert(words, this.bufferTimeOffset);
    const committed = this.hypothesis.flush();
    if (this.maxUnconfirmedSeconds !== null) {
      const forced = this.hypothesis.forceBefore(this.heardSeconds - this.maxUnconfirmedSeconds);
      this.forcedWords += forced.length;
      committed.push(...forced);
    }
    this.committed.push(...committed);
    if (this.bufferSeconds > this.trimSeconds) this._trimAtSegment(segmentEnds);
    if (this.bufferSeconds > this.maxBufferSeconds) this._trimToBound();
    return { committed, unconfirmed: this.hypothesis.complete() };
  }

  // Cut at the last committed word's end still in the buffer, or, with nothing committed or
  // pending there, keep only the buffer's last SILENCE_KEEP_SECONDS.
  _trimToBound() {
    const inBuffer = this.hypothesis.committedInBuffer;
    if (inBuffer.length) {
      const end = inBuffer[inBuffer.length - 1].end;
      if (end > this.bufferTimeOffset) this.chunkAt(end);
    } else if (!this.hypothesis.buffer.length) {
      this.chunkAt(this.streamSeconds - SILENCE_KEEP_SECONDS);
    }
  }

  // Cut at the last segment end (never the final one) inside the committed text.
  _trimAtSegment(segmentEnds) {
    if (!this.committed.length) return;
    const last = this.committed[this.committed.length - 1].end;
    for (let i = segmentEnds.length - 2; i >= 0; i--) {
      const time = this.bufferTimeOffset + segmentEnds[i];
      if (time <= last) {
        if (time > this.bufferTimeOffset) this.chunkAt(time);
        return;
      }
    }
  }

  // Drop the audio before stream time `time` and the committed words within it.
  chunkAt(time) {
    this.hypothesis.popCommitted(time);
    const cut = Math.min(Math.round((time - this.bufferTimeOffset) * this.sampleRate), this.audioLength);
    this._samples.copyWithin(0, cut, this.audioLength);
    this.audioLength -= cut;
    this.bufferTimeOffset = time;
  }

  // Commit the unconfirmed tail as final and start over.
  finish() {
    const tail = this.hypothesis.complete();
    this.reset();
    return { committed: tail, unconfirmed: [] };
  }
}

// How far the model trails the microphone once a pass has ended: the audio that arrived while it
// ran, unheard yet. A device keeps up while that stays near minChunkSeconds (passes as fast as
// the audio comes); past minChunkSeconds + toleranceSeconds a word waits that long before any
// pass hears it, and about as long again for the pass that confirms it: the device is falling
// behind, and the page says so with the figure rather than lag silently.
export function pacing({ streamSeconds, heardSeconds, minChunkSeconds, toleranceSeconds = 2 }) {
  const behindSeconds = Math.max(0, streamSeconds - heardSeconds);
  return { behindSeconds, fallingBehind: behindSeconds > minChunkSeconds + toleranceSeconds };
}

export function pacingText({ behindSeconds, fallingBehind }) {
  return fallingBehind ? `falling behind: ${behindSeconds.toFixed(1)} s` : "";
}

// events: one [wall time of commit, word end in stream time] per committed word; streamStart: the
// wall time at which stream time 0 was captured (same clock, seconds).
// firstCommitLatency: stream start to the first commit; meanCommitLag: mean of commit time minus
// the moment the word's end was heard. Both null without events.
export function commitLatency(events, streamStart) {
  if (!events.length) return { firstCommitLatency: null, meanCommitLag: null };
  const first = events.reduce((soonest, [wall]) => Math.min(soonest, wall), Infinity) - streamStart;
  let lag = 0;
  for (const [wall, end] of events) lag += wall - (streamStart + end);
  return { firstCommitLatency: first, meanCommitLag: lag / events.length };
}
