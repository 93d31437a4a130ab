/**
 * Ordered prefetching: start up to `concurrency` fetches ahead of the
 * consumer and hand results back in input order.
 *
 * @module
 */

/**
 * Yields `fetch(item)` for each item in order while keeping up to
 * `concurrency` fetches in flight. A failed fetch throws when its turn comes;
 * stopping early lets in-flight fetches settle without unhandled rejections.
 */
export async function* prefetch<T, R>(
  items: readonly T[],
  concurrency: number,
  fetch: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const window: Promise<R>[] = [];
  let next = 0;
  const fill = () => {
    while (window.length < Math.max(1, concurrency) && next < items.length) {
      const p = fetch(items[next++]);
      p.catch(() => {}); // observed when its turn comes
      window.push(p);
    }
  };
  fill();
  while (window.length > 0) {
    const result = await window.shift()!;
    fill();
    yield result;
  }
}
