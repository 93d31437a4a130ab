/**
 * Log lines that never make the JavaScript thread wait for their reader.
 *
 * A synchronous write to a pipe whose reader has stopped reading (a log collector that is down,
 * Docker's blocking log mode) blocks the thread at the next log line, wherever it is. A
 * database that is inside SQLite's write lock then keeps it, and the application's commits fail
 * with "database is locked" once their busy timeout runs out. The long-running commands
 * (`replicate`, `restore -f`) log through a {@link LineStream} instead.
 *
 * @module
 */

import { sleep } from "./os/async.ts";

/** Where a {@link LineStream} writes: an asynchronous byte writer such as `Deno.stderr`. */
export interface AsyncByteWriter {
  write(p: Uint8Array): Promise<number>;
}

/** Bytes of lines held while the reader does not read (about 4,000 lines); more are dropped. */
const LINE_QUEUE_LIMIT_BYTES = 1 << 20;

const encoder = new TextEncoder();

/**
 * Lines queued for an asynchronous writer, written in order, one write at a time. Up to
 * `limitBytes` wait for a slow or stalled reader; lines beyond are dropped and counted
 * ({@link LineStream.takeDropped}). Once the writer fails (the reader has gone: a broken pipe),
 * lines are discarded: a log line is never an error of the code that logs it.
 */
export class LineStream {
  #queue: Uint8Array[] = [];
  /** Bytes queued or being written. */
  #pending = 0;
  #dropped = 0;
  #broken = false;
  #draining: Promise<void> | undefined;

  /** A stream into `writer` holding at most `limitBytes` of unwritten lines. */
  constructor(readonly writer: AsyncByteWriter, readonly limitBytes = LINE_QUEUE_LIMIT_BYTES) {}

  /** Queues `line` and a newline; returns at once. */
  write(line: string): void {
    if (this.#broken) return;
    const bytes = encoder.encode(line + "\n");
    if (this.#pending + bytes.length > this.limitBytes) {
      this.#dropped++;
      return;
    }
    this.#queue.push(bytes);
    this.#pending += bytes.length;
    this.#draining ??= this.#drain();
  }

  /** Bytes not yet written. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * How many lines were dropped since the last call, once the reader has caught up (the queue
   * is at most half full); 0 until then, so the count is told when it can be read.
   */
  takeDropped(): number {
    if (this.#dropped === 0 || this.#pending > this.limitBytes / 2) return 0;
    const n = this.#dropped;
    this.#dropped = 0;
    return n;
  }

  /** Waits until every queued line is written, at most `timeoutMs`; true when all were. */
  async flush(timeoutMs: number): Promise<boolean> {
    const drained = this.#draining;
    if (drained) {
      const done = new AbortController();
      await Promise.race([drained, sleep(timeoutMs, done.signal)]);
      done.abort();
    }
    return this.#pending === 0;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        // Everything queued goes in one write: a burst of lines costs one system call.
        const batch = concat(this.#queue);
        this.#queue = [];
        for (let at = 0; at < batch.length;) at += await this.writer.write(batch.subarray(at));
        this.#pending -= batch.length;
      }
    } catch {
      this.#broken = true;
      this.#queue = [];
      this.#pending = 0;
    } finally {
      this.#draining = undefined;
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const streams = new Map<AsyncByteWriter, LineStream>();

/** The process's one stream into `writer` (standard output or error), made on first use. */
export function lineStreamFor(writer: AsyncByteWriter): LineStream {
  let stream = streams.get(writer);
  if (!stream) streams.set(writer, stream = new LineStream(writer));
  return stream;
}

/**
 * How long the process waits at exit for its log lines to be read. A stalled reader must not
 * hold the exit forever; a slow one gets this long.
 */
const EXIT_FLUSH_MS = 5000;

/** Waits until the lines of every stream made by {@link lineStreamFor} are written, at most `timeoutMs`. */
export async function flushLineStreams(timeoutMs = EXIT_FLUSH_MS): Promise<void> {
  await Promise.all([...streams.values()].map((s) => s.flush(timeoutMs)));
}
