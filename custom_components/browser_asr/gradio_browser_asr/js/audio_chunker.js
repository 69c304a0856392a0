// Microphone audio to 16 kHz mono chunks: pure functions and small classes, no Web Audio.

export const TARGET_RATE = 16000;

// Streaming resampler. Downsampling low-passes with a Blackman-windowed sinc (cutoff at
// `cutoff` x the output Nyquist) evaluated at each output's exact fractional input position, so
// any rate ratio works (44.1 kHz included); upsampling interpolates linearly. Feeding a signal in
// pieces gives exactly what feeding it whole does. Samples before the start and past the end
// count as silence.
export class Resampler {
  constructor(fromRate, toRate = TARGET_RATE, { cutoff = 0.9, zeroCrossings = 16 } = {}) {
    this.fromRate = checkRate(fromRate);
    this.toRate = checkRate(toRate);
    if (this.fromRate > this.toRate) {
      const fc = (cutoff * this.toRate) / 2 / this.fromRate; // cycles per input sample
      this.half = Math.ceil(zeroCrossings / (2 * fc));
      this.kernel = (d) => sinc(2 * fc * d) * blackman(d / this.half);
    } else {
      this.half = 1;
      this.kernel = (d) => Math.max(0, 1 - Math.abs(d));
    }
    this.phases = this.toRate / gcd(this.fromRate, this.toRate);
    this.weightsByPhase = new Map();
    this.history = new Float32Array(0); // input samples from absolute index historyStart on
    this.historyStart = 0;
    this.received = 0; // input samples pushed so far
    this.produced = 0; // output samples returned so far
  }

  // Append input; return the output samples whose filter taps have all arrived.
  push(samples) {
    const joined = new Float32Array(this.history.length + samples.length);
    joined.set(this.history);
    joined.set(samples, this.history.length);
    this.history = joined;
    this.received += samples.length;
    return this._produce((index) => index + this.half <= this.received - 1);
  }

  // Return the remaining output, up to the input's end, and start over.
  flush() {
    const end = this.received * this.toRate;
    const out = this._produce((index, numerator) => numerator < end);
    Object.assign(this, { history: new Float32Array(0), historyStart: 0, received: 0, produced: 0 });
    return out;
  }

  _produce(canProduce) {
    const out = [];
    for (;;) {
      const numerator = this.produced * this.fromRate; // output position x toRate, in input samples
      const index = Math.floor(numerator / this.toRate);
      if (!canProduce(index, numerator)) break;
      const weights = this._weights(numerator % this.toRate);
      const first = index - this.half + 1 - this.historyStart;
      let sum = 0;
      for (let j = 0; j < weights.length; j++) {
        const k = first + j;
        if (k >= 0 && k < this.history.length) sum += weights[j] * this.history[k];
      }
      out.push(sum);
      this.produced++;
    }
    // Keep only the input the next output's taps reach back to.
    const nextFirst = Math.floor((this.produced * this.fromRate) / this.toRate) - this.half + 1;
    const drop = Math.min(Math.max(0, nextFirst - this.historyStart), this.history.length);
    this.history = this.history.slice(drop);
    this.historyStart += drop;
    return Float32Array.from(out);
  }

  // Tap weights for an output at fractional input position index + phase / toRate, summing to 1.
  _weights(phase) {
    let weights = this.weightsByPhase.get(phase);
    if (weights) return weights;
    const fraction = phase / this.toRate;
    weights = new Float64Array(2 * this.half);
    let total = 0;
    for (let j = 0; j < weights.length; j++) {
      weights[j] = this.kernel(fraction + this.half - 1 - j); // distance from tap to position
      total += weights[j];
    }
    for (let j = 0; j < weights.length; j++) weights[j] /= total;
    if (this.phases <= 4096) this.weightsByPhase.set(phase, weights);
    return weights;
  }
}

// Resample a whole signal to 16 kHz; a copy when it is already at 16 kHz.
export function resampleTo16k(samples, fromRate) {
  if (checkRate(fromRate) === TARGET_RATE) return Float32Array.from(samples);
  const resampler = new Resampler(fromRate, TARGET_RATE);
  const head = resampler.push(samples);
  const tail = resampler.flush();
  const out = new Float32Array(head.length + tail.length);
  out.set(head);
  out.set(tail, head.length);
  return out;
}

// The mean of equally long channels.
export function mixToMono(channels) {
  if (!channels.length) return new Float32Array(0);
  const length = channels[0].length;
  if (channels.some((c) => c.length !== length)) throw new RangeError("channels differ in length");
  const out = new Float32Array(length);
  for (const channel of channels) for (let i = 0; i < length; i++) out[i] += channel[i];
  if (channels.length > 1) for (let i = 0; i < length; i++) out[i] /= channels.length;
  return out;
}

// Gathers audio until at least minChunkSeconds of it is new, then hands it over in one piece.
export class Chunker {
  constructor(minChunkSeconds = 1.0, rate = TARGET_RATE) {
    this.minChunkSamples = Math.round(minChunkSeconds * rate);
    this.parts = [];
    this.pending = 0; // samples since the last take()
  }

  get ready() {
    return this.pending >= this.minChunkSamples;
  }

  // Keep a copy of `samples` (Web Audio reuses its buffers); true once a chunk is ready.
  push(samples) {
    if (samples.length) {
      this.parts.push(Float32Array.from(samples));
      this.pending += samples.length;
    }
    return this.ready;
  }

  // All audio since the last take().
  take() {
    const out = new Float32Array(this.pending);
    let at = 0;
    for (const part of this.parts) {
      out.set(part, at);
      at += part.length;
    }
    this.parts = [];
    this.pending = 0;
    return out;
  }
}

function checkRate(rate) {
  const rounded = Math.round(rate);
  if (!(rounded > 0)) throw new RangeError(`bad sample rate: ${rate}`);
  return rounded;
}

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

function sinc(x) {
  return x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
}

function blackman(x) {
  return Math.abs(x) >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * x) + 0.08 * Math.cos(2 * Math.PI * x);
}
