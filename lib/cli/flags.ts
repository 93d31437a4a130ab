/**
 * Command-line flags in Go style and GNU style (`-config x`, `--config x`,
 * `-config=x`, `-flag=false`), before or after positional arguments, on top
 * of `node:util`'s `parseArgs`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FlagError } from "../errors.ts";

/** Declares a command's flags: name → kind. */
export type FlagSpec = Record<string, "string" | "boolean">;

/** Parsed flags and positional arguments. */
export interface ParsedFlags {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * Parses `args` against `spec`. Unknown flags and missing values throw
 * `FlagError` with Go's wording, naming the flag.
 */
export function parseFlags(args: string[], spec: FlagSpec): ParsedFlags {
  const normalized: string[] = [];
  const negated: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      normalized.push(...args.slice(i));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      normalized.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    const kind = spec[name];
    if (!kind) throw new FlagError(`flag provided but not defined: -${name}`);
    if (kind === "boolean" && eq >= 0) {
      const v = body.slice(eq + 1).toLowerCase();
      if (!["true", "false", "1", "0", "t", "f"].includes(v)) {
        throw new FlagError(
          `invalid boolean value ${JSON.stringify(body.slice(eq + 1))} for -${name}`,
        );
      }
      if (["false", "0", "f"].includes(v)) negated.push(name);
      else normalized.push(`--${name}`);
      continue;
    }
    if (kind === "string" && eq < 0 && i + 1 >= args.length) {
      throw new FlagError(`flag needs an argument: -${name}`);
    }
    // Joined as `--name=value` so that a value starting with "-" (such as `-o -`) stays a value.
    normalized.push(kind === "string" && eq < 0 ? `--${name}=${args[++i]}` : `--${body}`);
  }
  const options = Object.fromEntries(Object.entries(spec).map(([k, type]) => [k, { type }]));
  const { values, positionals } = parseArgs({
    args: normalized,
    options,
    allowPositionals: true,
    strict: true,
  });
  for (const name of negated) (values as Record<string, unknown>)[name] = false;
  return { values: values as ParsedFlags["values"], positionals };
}
