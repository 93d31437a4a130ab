import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { once } from "node:events";
import { connectStream } from "./socket.ts";

/** A TCP server on 127.0.0.1 that runs `serve` on each connection it accepts. */
function server(serve: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served: Promise<void>[] = [];
  let closed = false;
  const accepting = (async () => {
    for await (const conn of listener) served.push(serve(conn));
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      if (!closed) listener.close();
      closed = true;
      await accepting.catch(() => {});
      await Promise.all(served);
    },
  };
}

/** Reads `conn` to EOF. */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(1 << 16);
  for (let n; (n = await conn.read(buf)) !== null;) parts.push(buf.slice(0, n));
  return new Uint8Array(Buffer.concat(parts));
}

Deno.test("ConnStream: bytes written in bursts arrive in order; the peer's answer and EOF are read", async () => {
  let received: Uint8Array | undefined;
  await using srv = server(async (conn) => {
    received = await readAll(conn);
    await conn.write(new TextEncoder().encode("bye"));
    conn.close();
  });
  const sock = await connectStream("127.0.0.1", srv.port, 5_000);
  const sent: Buffer[] = [];
  // Many writes in one turn queue behind the first and go out together (_writev).
  for (let i = 0; i < 200; i++) {
    // Mostly SSH-packet sizes, and now and then one larger than a whole batch.
    const chunk = Buffer.alloc(i % 50 === 7 ? 100_000 : 1 + (i * 977) % 35_000, i);
    sent.push(chunk);
    sock.write(chunk);
  }
  sock.end();
  const answer: Buffer[] = [];
  sock.on("data", (d: Buffer) => answer.push(d));
  await once(sock, "close");
  assert.deepEqual(received, new Uint8Array(Buffer.concat(sent)));

  assert.equal(Buffer.concat(answer).toString(), "bye");
});

Deno.test("ConnStream: a paused reader holds at most one read beyond its buffer limit", async () => {
  // More than loopback's socket buffers hold on both sides.
  const total = 64 << 20;
  let sentAll = false;
  await using srv = server(async (conn) => {
    const block = new Uint8Array(1 << 16);
    try {
      for (let n = 0; n < total; n += block.length) await conn.write(block);
      sentAll = true;
    } catch {
      // The client closed first.
    }
    conn.close();
  });
  const sock = await connectStream("127.0.0.1", srv.port, 5_000);
  sock.read(0); // starts filling the buffer without consuming it
  // Let the peer fill what TCP will hold; the stream must stop asking the connection for more.
  const deadline = Date.now() + 5_000;
  let last = -1;
  while (Date.now() < deadline && sock.readableLength !== last) {
    last = sock.readableLength;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(!sentAll, "the peer could not send everything to a paused reader");
  assert.ok(
    sock.readableLength <= sock.readableHighWaterMark + (64 << 10),
    `buffered ${sock.readableLength} bytes`,
  );
  sock.destroy();
  await once(sock, "close");
});

Deno.test("ConnStream: destroyed while a read is pending, it closes the connection quietly", async () => {
  let peerSawEof = false;
  await using srv = server(async (conn) => {
    await conn.write(new Uint8Array([1]));
    peerSawEof = (await readAll(conn)).length === 0;
    conn.close();
  });
  const sock = await connectStream("127.0.0.1", srv.port, 5_000);
  const errors: unknown[] = [];
  sock.on("error", (e) => errors.push(e));
  // After the first byte the stream is waiting on its next read.
  await once(sock, "data");
  sock.destroy();
  await once(sock, "close");
  await srv[Symbol.asyncDispose]();
  assert.ok(peerSawEof);
  assert.deepEqual(errors, []);
});

Deno.test("connectStream: a refused connection is a socket error with its code", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const err = await connectStream("127.0.0.1", port, 5_000).then(() => undefined, (e) => e);
  assert.equal(err?.code, "ECONNREFUSED");
  assert.equal(err?.level, "client-socket");
});
