/**
 * The in-memory backend: a test double of `ReplicaClient` for fast tests of
 * the replica loop and restore, with injectable faults (fail the n-th call
 * of an operation, stall one until released or aborted, truncate a read).
 * Not a user-facing backend: config and replica URLs never reach it.
 *
 * @module
 */

export { MemoryReplicaClient } from "./client.ts";
export { Faults, type Operation, type ReadOperation, type Stall } from "./faults.ts";
