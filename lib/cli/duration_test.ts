/**
 * Go duration strings (lib/cli/duration.ts), as v0.3.13's config accepts them and as Go prints
 * them: units from ns to h plus d, bare integers as nanoseconds.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("durations: Go syntax, bare integers are nanoseconds, plus days", () => {
  const cases: [unknown, number][] = [
    ["500ms", 500],
    ["1s", 1000],
    ["1m30s", 90_000],
    ["24h", 86_400_000],
    ["1h30m", 5_400_000],
    ["1.5h", 5_400_000],
    [".5s", 500],
    ["2h45m10.5s", 9_910_500],
    ["1500us", 1.5],
    ["1500µs", 1.5],
    ["2000000ns", 2],
    ["7d", 604_800_000],
    ["1d12h", 129_600_000],
    [1_000_000_000, 1000],
    ["1000000000", 1000],
    [0, 0],
    ["0", 0],
    ["0s", 0],
    ["-5s", -5000],
  ];
  for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, String(input));
  for (const bad of ["", "s", "1x", "1 s", "5sec", "1h-5m", "abc", true, [1], { a: 1 }, null]) {
    assert.equal(parseDuration(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(parseDuration("5"), 5e-6);
});

Deno.test("durations: formatted as Go prints them", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [1000, "1s"],
    [90_000, "1m30s"],
    [86_400_000, "24h0m0s"],
    [3_600_000, "1h0m0s"],
    [3200, "3.2s"],
    [150, "150ms"],
    [1.5, "1.5ms"],
    [-3, "-3ms"],
    [-83_000, "-1m23s"],
  ];
  for (const [ms, s] of cases) assert.equal(formatDuration(ms), s, String(ms));
});

Deno.test("durations: what formatDuration prints parses back to the same milliseconds", () => {
  fc.assert(
    fc.property(fc.integer({ min: -1e11, max: 1e11 }), (ms) => {
      const text = formatDuration(ms);
      // Decimal seconds such as 1.001 are not exact in binary: equal to a nanosecond.
      assert.ok(Math.abs(parseDuration(text)! - ms) < 1e-6, `${ms} -> ${text}`);
    }),
  );
  // Go's own spellings of a value all parse to it.
  fc.assert(
    fc.property(fc.nat(1000), fc.nat(59), fc.nat(59), (h, m, s) => {
      const ms = ((h * 60 + m) * 60 + s) * 1000;
      return parseDuration(`${h}h${m}m${s}s`) === ms && parseDuration(`${ms}ms`) === ms &&
        parseDuration(String(ms * 1e6)) === ms;
    }),
  );
});
