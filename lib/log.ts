/**
 * Structured logging in the two shapes v0.3.13 prints: slog text/JSON lines
 * (config mode) and Go's default logger format (URL mode).
 *
 * @module
 */

/** Log levels in increasing severity. */
export type Level = "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Attributes attached to a log line. */
export type Attrs = Record<string, unknown>;

/** Options of a logger. */
export interface LoggerOptions {
  level?: string;
  /** `text` (slog text), `json`, or `plain` (Go's default logger: `2006/01/02 15:04:05 INFO msg k=v`). */
  format?: "text" | "json" | "plain";
  /** Where lines go; default standard error (written synchronously). */
  write?: (line: string) => void;
  /**
   * Lines dropped since the last call (see `LineStream.takeDropped`): a nonzero count is
   * logged as a warning before the next line.
   */
  dropped?: () => number;
}

const encoder = new TextEncoder();

/** Where a logger's lines go, shared by a logger and the loggers derived from it. */
interface Sink {
  min: number;
  format: "text" | "json" | "plain";
  write: (line: string) => void;
  dropped?: () => number;
}

/** A logger that carries attributes (db, replica) into every line. */
export class Logger {
  readonly #sink: Sink;

  /** Creates a logger; `attrs` are prepended to every line's attributes. */
  constructor(options: LoggerOptions | Sink = {}, readonly attrs: Attrs = {}) {
    if ("min" in options) {
      this.#sink = options;
      return;
    }
    const level = (options.level ?? "info").toLowerCase();
    this.#sink = {
      min: RANK[(level === "warning" ? "warn" : level) as Level] ?? RANK.info,
      format: options.format ?? "plain",
      write: options.write ?? ((line) => Deno.stderr.writeSync(encoder.encode(line + "\n"))),
      dropped: options.dropped,
    };
  }

  /** A logger writing to the same place with more attributes. */
  with(attrs: Attrs): Logger {
    return new Logger(this.#sink, { ...this.attrs, ...attrs });
  }

  /** Logs at debug level. */
  debug(msg: string, attrs?: Attrs): void {
    this.log("debug", msg, attrs);
  }
  /** Logs at info level. */
  info(msg: string, attrs?: Attrs): void {
    this.log("info", msg, attrs);
  }
  /** Logs at warn level. */
  warn(msg: string, attrs?: Attrs): void {
    this.log("warn", msg, attrs);
  }
  /** Logs at error level. */
  error(msg: string, attrs?: Attrs): void {
    this.log("error", msg, attrs);
  }

  /** Logs one line with this logger's attributes plus `attrs`. */
  log(level: Level, msg: string, attrs: Attrs = {}): void {
    const sink = this.#sink;
    if (RANK[level] < sink.min) return;
    const dropped = sink.dropped?.() ?? 0;
    if (dropped > 0) {
      write(sink, "warn", "log lines dropped: the log output was not read", { lines: dropped });
    }
    write(sink, level, msg, { ...this.attrs, ...attrs });
  }
}

/** Writes one line in the sink's format. */
function write(sink: Sink, level: Level, msg: string, all: Attrs): void {
  const now = new Date();
  const LEVEL = level.toUpperCase();
  if (sink.format === "json") {
    sink.write(JSON.stringify({ time: now.toISOString(), level: LEVEL, msg, ...jsonAttrs(all) }));
    return;
  }
  const kv = Object.entries(all).map(([k, v]) => `${k}=${quote(v)}`).join(" ");
  if (sink.format === "text") {
    sink.write(`time=${now.toISOString()} level=${LEVEL} msg=${quote(msg)}${kv ? " " + kv : ""}`);
  } else {
    const stamp = now.toISOString().slice(0, 19).replace("T", " ").replaceAll("-", "/");
    sink.write(`${stamp} ${LEVEL} ${msg}${kv ? " " + kv : ""}`);
  }
}

function jsonAttrs(attrs: Attrs): Attrs {
  return Object.fromEntries(
    Object.entries(attrs).map((
      [k, v],
    ) => [k, v instanceof Error ? v.message : v instanceof Date ? v.toISOString() : v]),
  );
}

function quote(v: unknown): string {
  const s = v instanceof Error ? v.message : v instanceof Date ? v.toISOString() : String(v);
  return s === "" || /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}
