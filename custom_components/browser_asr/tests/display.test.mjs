// Runs every case of tests/vectors/display.json against the JS twin of explorer/display.py
// (tests/test_display.py runs the same file in Python).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import test from "node:test";

import * as display from "../gradio_browser_asr/js/display.js";

const VECTORS = new URL("../../../tests/vectors/display.json", import.meta.url);
const { cases } = JSON.parse(readFileSync(VECTORS, "utf8"));

for (const c of cases) {
  test(`${c.fn}(${JSON.stringify(c.in)})`, () => {
    const value = typeof c.in === "string" ? Number(c.in) : c.in;
    assert.equal(display[c.fn](value), c.out);
  });
}
