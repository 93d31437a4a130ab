/**
 * Type checks for config values that name the file and the key in their errors, and warn
 * about unknown keys.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { parseDuration } from "./duration.ts";

/** Type checks that name the file and key in their errors. */
export class Validator {
  constructor(readonly file: string, readonly warn: (msg: string) => void) {}

  fail(key: string, want: string, got: unknown): never {
    throw new ConfigError(this.file, key, `expected ${want}, got ${JSON.stringify(got)}`);
  }
  object(x: unknown, key: string): Record<string, unknown> {
    if (x === null || typeof x !== "object" || Array.isArray(x)) this.fail(key, "a mapping", x);
    return x as Record<string, unknown>;
  }
  list(x: unknown, key: string): unknown[] {
    if (x === undefined || x === null) return [];
    if (!Array.isArray(x)) this.fail(key, "a list", x);
    return x;
  }
  string(x: unknown, key: string): string | undefined {
    if (x === undefined || x === null) return undefined;
    if (typeof x === "number" || typeof x === "boolean") return String(x);
    if (typeof x !== "string") this.fail(key, "a string", x);
    return x;
  }
  bool(x: unknown, key: string): boolean | undefined {
    if (x === undefined || x === null) return undefined;
    if (typeof x === "boolean") return x;
    // YAML 1.1 (v0.3.13's parser) also reads these words as booleans; YAML 1.2 keeps them as strings.
    if (typeof x === "string" && /^(y|yes|on)$/i.test(x)) return true;
    if (typeof x === "string" && /^(n|no|off)$/i.test(x)) return false;
    this.fail(key, "true or false", x);
  }
  int(x: unknown, key: string): number | undefined {
    if (x === undefined || x === null) return undefined;
    if (typeof x !== "number" || !Number.isInteger(x) || x < 0) {
      this.fail(key, "a non-negative integer", x);
    }
    return x;
  }
  duration(x: unknown, key: string): number | undefined {
    if (x === undefined || x === null) return undefined;
    const ms = parseDuration(x);
    if (ms === undefined) this.fail(key, "a duration such as 1s, 10m, 24h or 7d", x);
    return ms;
  }
  unknownKeys(o: Record<string, unknown>, known: string[], prefix: string): void {
    for (const k of Object.keys(o)) {
      if (!known.includes(k)) this.warn(`${this.file}: unknown key ${prefix}${k} (ignored)`);
    }
  }
}
