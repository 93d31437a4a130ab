/**
 * What a network replica client counts for the metrics endpoint (v0.3.13's
 * `litestream_replica_operation_*`): requests by operation and object bytes each way.
 *
 * @module
 */

/** An operation on a store, as counted and as named in errors. */
export type StoreOperation = "GET" | "PUT" | "LIST" | "DELETE";

/** Requests and bytes of one replica client so far; never reset. */
export interface StoreCounters {
  /** Requests sent, by operation. */
  readonly requests: Record<StoreOperation, number>;
  /** Object bytes uploaded (`PUT`) and downloaded (`GET`). */
  readonly bytes: Record<"GET" | "PUT", number>;
}

/** Counters at zero. */
export function newStoreCounters(): StoreCounters {
  return { requests: { GET: 0, PUT: 0, LIST: 0, DELETE: 0 }, bytes: { GET: 0, PUT: 0 } };
}
