/**
 * Ordered prefetching: start up to `concurrency` fetches ahead of the
 * consumer and hand results back in input order.
 *
 * @module
 */

/** Caps what prefetched results may hold in memory together. */
export interface PrefetchBudget<T> {
  /** What fetching `item` holds in memory (e.g. its size in bytes). */
  weigh(item: T): number;
  /** The most all fetches in flight or waiting may weigh; one fetch may always run. */
  max: number;
}

/**
 * Yields `fetch(item)` for each item in order while keeping up to
 * `concurrency` fetches in flight (and within `budget` when given). A failed
 * fetch throws when its turn comes; stopping early lets in-flight fetches
 * settle without unhandled rejections.
 */
export async function* prefetch<T, R>(
  items: readonly T[],
  concurrency: number,
  fetch: (item: T) => Promise<R>,
  budget?: PrefetchBudget<T>,
): AsyncGenerator<R> {
  const window: { result: Promise<R>; weight: number }[] = [];
  let weight = 0;
  let next = 0;
  const fill = () => {
    while (window.length < Math.max(1, concurrency) && next < items.length) {
      const w = budget ? budget.weigh(items[next]) : 0;
      if (budget && window.length > 0 && weight + w > budget.max) break;
      const result = fetch(items[next++]);
      result.catch(() => {}); // observed when its turn comes
      window.push({ result, weight: w });
      weight += w;
    }
  };
  fill();
  while (window.length > 0) {
    const { result, weight: w } = window.shift()!;
    weight -= w;
    const value = await result;
    fill();
    yield value;
  }
}
