/**
 * A loopback TCP proxy that breaks connections on command, for protocols the
 * HTTP fault proxy (`fault_proxy.ts`) cannot parse (SSH): it cuts a
 * connection after a number of bytes in one direction, drops every open
 * connection at once, or refuses new ones. It can also delay every byte, as a
 * distant server's round trip would.
 *
 * @module
 */

import { sleep } from "../../lib/os/async.ts";

/** A running TCP fault proxy. */
export interface TcpFaultProxy extends AsyncDisposable {
  /** The 127.0.0.1 port to connect to instead of the upstream's. */
  readonly port: number;
  /** Connections accepted and connections cut so far. */
  readonly stats: { connections: number; cuts: number };
  /**
   * Cuts the next `times` connections (open or new) once `afterBytes` more bytes have passed in
   * `direction` (`down`: server to client, `up`: client to server), counted from now.
   */
  cut(direction: "up" | "down", times: number, afterBytes: number): void;
  /** Closes every open connection now; returns how many. */
  dropAll(): number;
  /** While set, new connections are closed as soon as they are accepted. */
  refuse: boolean;
  /** Milliseconds each byte waits in each direction (half the round trip it adds); 0 by default. */
  delayMs: number;
  /** Stops the listener and closes every connection. */
  close(): Promise<void>;
}

interface CutRule {
  direction: "up" | "down";
  times: number;
  afterBytes: number;
  seen: number;
}

/** Starts a proxy on a free loopback port forwarding to `127.0.0.1:upstreamPort`. */
export function startTcpFaultProxy(upstreamPort: number): TcpFaultProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<{ close(): void }>();
  const stats = { connections: 0, cuts: 0 };
  let rule: CutRule | undefined;

  /** Copies `from` to `to`, counting bytes against the cut rule; returns when either side ends. */
  const pump = async (
    from: Deno.Conn,
    to: Deno.Conn,
    direction: "up" | "down",
    cutNow: () => void,
  ) => {
    const buf = new Uint8Array(64 * 1024);
    // Delayed bytes go out in order from this chain while reading goes on.
    let delayed = Promise.resolve();
    let failed: unknown;
    const forward = (chunk: Uint8Array) => {
      if (proxy.delayMs <= 0) return writeAll(to, chunk);
      if (failed) throw failed;
      const copy = chunk.slice();
      const due = performance.now() + proxy.delayMs;
      delayed = delayed.then(async () => {
        await sleep(Math.max(0, due - performance.now()));
        await writeAll(to, copy);
      }).catch((err) => void (failed ??= err));
    };
    while (true) {
      const n = await from.read(buf);
      if (n === null) return await delayed;
      let chunk = buf.subarray(0, n);
      if (rule && rule.direction === direction && rule.times > 0) {
        const room = rule.afterBytes - rule.seen;
        if (chunk.length >= room) {
          chunk = chunk.subarray(0, Math.max(0, room));
          if (chunk.length > 0) await writeAll(to, chunk);
          rule.times--;
          rule.seen = 0;
          stats.cuts++;
          return cutNow();
        }
        rule.seen += chunk.length;
      }
      await forward(chunk);
    }
  };

  const serve = async (client: Deno.TcpConn) => {
    stats.connections++;
    let up: Deno.TcpConn | undefined;
    const pair = {
      close() {
        for (const c of [client, up]) {
          try {
            c?.close();
          } catch { /* closed */ }
        }
        open.delete(pair);
      },
    };
    open.add(pair);
    try {
      if (proxy.refuse) return;
      up = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
      // Forward small writes at once, as a router does: with Nagle's algorithm here, a request
      // behind another unacknowledged one waited for a delayed ACK (40 ms and more per round
      // trip through `delayMs`), which no real network adds.
      client.setNoDelay(true);
      up.setNoDelay(true);
      await Promise.race([
        pump(client, up, "up", pair.close),
        pump(up, client, "down", pair.close),
      ]);
    } catch {
      // A side went away: the other sees its connection end.
    } finally {
      pair.close();
    }
  };

  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })().catch(() => {});

  const close = async () => {
    listener.close();
    for (const p of [...open]) p.close();
    await accepting;
  };

  const proxy: TcpFaultProxy = {
    port: (listener.addr as Deno.NetAddr).port,
    stats,
    refuse: false,
    delayMs: 0,
    cut(direction, times, afterBytes) {
      rule = { direction, times, afterBytes, seen: 0 };
    },
    dropAll() {
      const n = open.size;
      for (const p of [...open]) p.close();
      return n;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
  return proxy;
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}
