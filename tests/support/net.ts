/**
 * Loopback ports for servers a test starts in another process (moto, our metrics endpoint).
 *
 * @module
 */

/** A 127.0.0.1 port that was free a moment ago (the child binds it a little later). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}
