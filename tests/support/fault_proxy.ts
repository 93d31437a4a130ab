/**
 * A loopback HTTP/1.1 proxy in front of an S3 server that injects faults on
 * command: dropped connections, stalls, 5xx answers and responses cut off
 * mid-body. Bytes pass through unchanged (so SigV4 signatures stay valid);
 * only the unsigned `Connection` and `Expect` headers are rewritten (and a chunked request body
 * is forwarded de-chunked, with its `Content-Length`), which
 * makes every request use its own connection and lets faults be decided per
 * request.
 *
 * @module
 */

/** What happens to a faulted request. */
export type Fault =
  /** Close the connection after reading the request, without any answer. */
  | { kind: "drop" }
  /** Read the request and never answer; the connection stays open until the client gives up. */
  | { kind: "stall" }
  /** Answer with this HTTP status and an S3-style XML error body. */
  | { kind: "status"; status: number }
  /** Forward the request, then close the connection after this many bytes of the response body. */
  | { kind: "cut"; afterBodyBytes: number }
  /**
   * Forward the request without its `Range` header, as a server without range support sees
   * it (the upstream must accept the changed signature: `startS3rver({ allowMismatchedSignatures: true })`).
   */
  | { kind: "ignoreRange" };

/** Which requests get a fault, and how often. */
export interface FaultRule {
  fault: Fault;
  /** Share of the matching requests that fail, spread evenly (0.25 = every 4th); default 1. */
  share?: number;
  /** Stop after this many faults; default unlimited. */
  times?: number;
  /** Only requests with this HTTP method. */
  method?: string;
  /** Only requests whose target (path and query) contains this string. */
  pathIncludes?: string;
}

/** A running fault proxy. */
export interface FaultProxy extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`: use as the S3 endpoint. */
  readonly endpoint: string;
  /** Requests seen and faults injected so far. */
  readonly stats: { requests: number; faults: number };
  /** Replaces the active rules; a request gets the fault of the first matching rule that fires. */
  setRules(...rules: FaultRule[]): void;
  /** Closes the connections of stalled requests now, as a client timeout would (faster). */
  releaseStalled(): void;
  /** Stops the listener and closes every open connection. */
  close(): Promise<void>;
}

interface RuleState {
  rule: FaultRule;
  seen: number;
  fired: number;
}

interface ParsedRequest {
  method: string;
  target: string;
  /** Request head as forwarded (rewritten headers), followed by the whole body. */
  bytes: Uint8Array;
}

const CRLF = new Uint8Array([13, 10]);
const CRLF2 = new Uint8Array([13, 10, 13, 10]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options of a fault proxy. */
export interface FaultProxyOptions {
  /**
   * Caps each connection's response body at this many bytes a second, like one connection
   * to a remote object store (S3 gives about 50–100 MB/s per connection).
   */
  bytesPerSecond?: number;
}

/** Starts a proxy on a free loopback port forwarding to `upstream` (`http://host:port`). */
export function startFaultProxy(upstream: string, options: FaultProxyOptions = {}): FaultProxy {
  const target = new URL(upstream);
  const upstreamAddr = { hostname: target.hostname, port: Number(target.port || 80) };
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const stalled = new Set<Deno.Conn>();
  const stats = { requests: 0, faults: 0 };
  let rules: RuleState[] = [];

  const decide = (req: ParsedRequest): Fault | undefined => {
    for (const st of rules) {
      const { rule } = st;
      if (rule.method && rule.method !== req.method) continue;
      if (rule.pathIncludes && !req.target.includes(rule.pathIncludes)) continue;
      if (rule.times !== undefined && st.fired >= rule.times) continue;
      const share = rule.share ?? 1;
      st.seen++;
      // Evenly spread: fire whenever the running quota crosses an integer.
      if (Math.floor(st.seen * share) > Math.floor((st.seen - 1) * share)) {
        st.fired++;
        stats.faults++;
        return rule.fault;
      }
    }
    return undefined;
  };

  const serve = async (conn: Deno.Conn) => {
    open.add(conn);
    let up: Deno.Conn | undefined;
    try {
      const req = await readRequest(conn);
      if (!req) return;
      stats.requests++;
      const fault = decide(req);
      if (fault?.kind === "drop") return;
      if (fault?.kind === "stall") {
        stalled.add(conn);
        await conn.read(new Uint8Array(1)).catch(() => null);
        stalled.delete(conn);
        return;
      }
      if (fault?.kind === "status") {
        await writeAll(conn, errorResponse(fault.status));
        return;
      }
      up = await Deno.connect(upstreamAddr);
      open.add(up);
      await writeAll(up, fault?.kind === "ignoreRange" ? withoutRange(req.bytes) : req.bytes);
      await pipeResponse(up, conn, req.method, {
        limit: fault?.kind === "cut" ? fault.afterBodyBytes : Infinity,
        bytesPerSecond: options.bytesPerSecond,
      });
    } catch {
      // A peer went away: nothing to report, the client sees a broken connection.
    } finally {
      for (const c of [conn, up]) {
        if (c && open.delete(c)) c.close();
      }
    }
  };

  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});

  const close = async () => {
    listener.close();
    for (const c of open) c.close();
    open.clear();
    await accepting;
  };

  return {
    endpoint: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    stats,
    setRules(...next: FaultRule[]) {
      rules = next.map((rule) => ({ rule, seen: 0, fired: 0 }));
    },
    releaseStalled() {
      for (const c of stalled) if (open.delete(c)) c.close();
      stalled.clear();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Bytes a relayed body is read in. */
const RELAY_BYTES = 256 * 1024;

/** Buffered reads from a connection: heads, lines, exact byte counts. */
class ConnReader {
  #buf: Uint8Array = new Uint8Array(0);
  #relay: Uint8Array | undefined;

  constructor(readonly conn: Deno.Conn) {}

  /** Reads up to and including `delim`; `undefined` at EOF. */
  async until(delim: Uint8Array): Promise<Uint8Array | undefined> {
    for (let at = indexOf(this.#buf, delim); at < 0; at = indexOf(this.#buf, delim)) {
      if (!await this.#fill()) return undefined;
    }
    return this.#take(indexOf(this.#buf, delim) + delim.length);
  }

  /** Up to `max` bytes (at least one), or `undefined` at EOF; valid until the next call. */
  async some(max: number): Promise<Uint8Array | undefined> {
    if (this.#buf.length > 0) return this.#take(Math.min(max, this.#buf.length));
    // Nothing buffered (a body being relayed): read straight into a reused buffer, so relaying
    // costs the proxy little CPU beside the client it serves.
    this.#relay ??= new Uint8Array(RELAY_BYTES);
    const n = await this.conn.read(this.#relay.subarray(0, Math.min(max, RELAY_BYTES)));
    return n === null ? undefined : this.#relay.subarray(0, n);
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    this.#buf = concat(this.#buf, chunk.subarray(0, n));
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
}

/** A parsed message head: start line and header lines. */
interface Head {
  start: string;
  lines: string[];
}

async function readHead(r: ConnReader): Promise<Head | undefined> {
  const raw = await r.until(CRLF2);
  if (!raw) return undefined;
  const [start, ...lines] = decoder.decode(raw.subarray(0, raw.length - 4)).split("\r\n");
  return { start, lines };
}

function field(head: Head, name: string): string | undefined {
  const line = head.lines.find((l) => l.toLowerCase().startsWith(`${name}:`));
  return line?.slice(name.length + 1).trim();
}

/** Serialises a head without hop-by-hop headers, plus `Connection: close`. */
function encodeHead(head: Head): Uint8Array {
  const kept = head.lines.filter((l) =>
    !/^(connection|keep-alive|expect|transfer-encoding):/i.test(l)
  );
  return encoder.encode([head.start, ...kept, "Connection: close", "", ""].join("\r\n"));
}

/**
 * Reads one request (head and body, by `Content-Length` or chunked) and rewrites its head:
 * `Connection: close`, and no `Expect: 100-continue` (the proxy answers the
 * 100 itself, because it buffers the body before forwarding).
 */
async function readRequest(conn: Deno.Conn): Promise<ParsedRequest | undefined> {
  const r = new ConnReader(conn);
  const head = await readHead(r);
  if (!head) return undefined;
  const [method, target] = head.start.split(" ");
  if (field(head, "expect")?.toLowerCase() === "100-continue") {
    await writeAll(conn, encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
  }
  if (field(head, "transfer-encoding")?.toLowerCase().includes("chunked")) {
    // A chunked body (streamed uploads: ours to GCS, Google's Go library) is forwarded
    // de-chunked, with its length.
    const body = await readChunked(r);
    if (!body) return undefined;
    const lines = head.lines.filter((l) => !/^content-length:/i.test(l));
    lines.push(`Content-Length: ${body.length}`);
    const encoded = encodeHead({ start: head.start, lines });
    return { method, target, bytes: concat(encoded, body) };
  }
  const encoded = encodeHead(head);
  const bytes = new Uint8Array(encoded.length + Number(field(head, "content-length") ?? 0));
  bytes.set(encoded);
  for (let filled = encoded.length; filled < bytes.length;) {
    const chunk = await r.some(bytes.length - filled);
    if (!chunk) return undefined;
    bytes.set(chunk, filled);
    filled += chunk.length;
  }
  return { method, target, bytes };
}

/** The request head and body in `bytes` with its `Range` header line removed. */
function withoutRange(bytes: Uint8Array): Uint8Array {
  const end = indexOf(bytes, CRLF2);
  const head = decoder.decode(bytes.subarray(0, end)).split("\r\n")
    .filter((l) => !/^range:/i.test(l)).join("\r\n");
  return concat(encoder.encode(head), bytes.subarray(end));
}

/** A chunked body, de-chunked (trailers dropped); `undefined` if the peer went away. */
async function readChunked(r: ConnReader): Promise<Uint8Array | undefined> {
  const parts: Uint8Array[] = [];
  for (;;) {
    const line = await r.until(CRLF);
    if (!line) return undefined;
    const size = parseInt(decoder.decode(line), 16);
    if (!(size > 0)) break;
    for (let left = size; left > 0;) {
      const chunk = await r.some(left);
      if (!chunk) return undefined;
      parts.push(chunk.slice());
      left -= chunk.length;
    }
    if (!await r.until(CRLF)) return undefined;
  }
  // Trailers, up to the empty line that ends the message.
  for (let t = await r.until(CRLF); t && t.length > 2; t = await r.until(CRLF));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.length) - p.length);
  return out;
}

/**
 * Relays one response, stopping after `limit` body bytes, at most `bytesPerSecond`. The head
 * gets `Connection: close` (the upstream may keep its connection open regardless), and a
 * chunked body is relayed de-chunked, delimited by the close.
 */
async function pipeResponse(
  from: Deno.Conn,
  to: Deno.Conn,
  method: string,
  { limit, bytesPerSecond }: { limit: number; bytesPerSecond?: number },
): Promise<void> {
  const r = new ConnReader(from);
  const head = await readHead(r);
  if (!head) return;
  await writeAll(to, encodeHead(head));
  const status = Number(head.start.split(" ")[1]);
  if (method === "HEAD" || status === 204 || status === 304) return;
  let budget = limit;
  const started = performance.now();
  let sent = 0;
  const copy = async (n: number) => {
    while (n > 0) {
      const chunk = await r.some(Math.min(n, budget));
      if (!chunk && n === Infinity) return; // A close-delimited body ended.
      if (!chunk) throw new Error("fault proxy: upstream closed mid-body");
      await writeAll(to, chunk);
      n -= chunk.length;
      budget -= chunk.length;
      if (budget <= 0) throw new Error("fault proxy: response cut as instructed");
      sent += chunk.length;
      // The link's pace: wait until the bytes sent so far are due.
      const due = bytesPerSecond
        ? (sent / bytesPerSecond) * 1000 - (performance.now() - started)
        : 0;
      if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
    }
  };
  if (field(head, "transfer-encoding")?.toLowerCase().includes("chunked")) {
    for (;;) {
      const size = parseInt(decoder.decode(await r.until(CRLF) ?? new Uint8Array()), 16);
      if (!(size > 0)) return; // Last chunk (trailers are dropped) or a broken stream.
      await copy(size);
      await r.until(CRLF);
    }
  }
  const length = field(head, "content-length");
  await copy(length === undefined ? Infinity : Number(length));
}

/** An S3-style error response that closes the connection. */
function errorResponse(status: number): Uint8Array {
  // Not SlowDown for 503: the SDK backs off 5x longer on throttling codes, slowing tests.
  const code = status === 503
    ? "ServiceUnavailable"
    : status === 429
    ? "TooManyRequests"
    : "InternalError";
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>injected by fault proxy</Message></Error>`;
  return encoder.encode(
    `HTTP/1.1 ${status} Injected\r\nContent-Type: application/xml\r\n` +
      `Content-Length: ${encoder.encode(body).length}\r\nConnection: close\r\n\r\n${body}`,
  );
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
