/**
 * The replica lease's format: a small JSON document naming the replicator that writes the
 * replica (its meta directory's id, host, process, generation) and when it last said it was
 * alive. Pure functions; the protocol is in `lease.ts`, the identity file in `identity.ts`.
 *
 * @module
 */

/** Who a replicator is. `id` comes from its meta directory, so a restart keeps it. */
export interface LeaseIdentity {
  /** Random id kept in the meta directory (`<meta>/replicator-id`). */
  id: string;
  host: string;
  pid: number;
  /**
   * The meta directory's path. With the same id and host it proves a restart: a live process
   * with this meta directory would hold its lock, which the new one has taken.
   */
  meta: string;
}

/** A replicator that was refused and said so in the holder's lease. */
export interface LeaseContender extends LeaseIdentity {
  generation?: string;
  /** When it asked (its own clock, ISO 8601). */
  at: string;
}

/** The lease object's content. */
export interface LeaseRecord extends LeaseIdentity {
  /** Format version: 1. */
  v: 1;
  /** The holder's current generation, for messages. */
  generation?: string;
  /** When the holder took the lease and last renewed it (its own clock, ISO 8601). */
  acquired: string;
  renewed: string;
  /** How long the lease lasts unrenewed, in milliseconds. */
  ttl: number;
  /** Taken over with `replicate -force`. */
  forced?: boolean;
  /** Parked by an idle holder: renewed once with a long `ttl`, then not until it uploads. */
  parked?: boolean;
  /** Released by a clean shutdown: the next replicator takes it at once. */
  released?: boolean;
  /** The last replicator refused while this one held the lease. */
  contender?: LeaseContender;
}

const encoder = new TextEncoder();

/** The lease's bytes. */
export function encodeLease(record: LeaseRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record) + "\n");
}

/** Parses a lease's bytes; undefined when they are not a lease of this format. */
export function decodeLease(data: Uint8Array): LeaseRecord | undefined {
  let r: Partial<LeaseRecord>;
  try {
    r = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
  const ok = r && r.v === 1 && typeof r.id === "string" && typeof r.host === "string" &&
    typeof r.pid === "number" && typeof r.meta === "string" && typeof r.renewed === "string" &&
    typeof r.acquired === "string" && typeof r.ttl === "number" && r.ttl > 0 &&
    !Number.isNaN(Date.parse(r.renewed));
  return ok ? r as LeaseRecord : undefined;
}

/** Same replicator process: same meta directory id, host and pid. */
export function sameProcess(a: LeaseIdentity, b: LeaseIdentity): boolean {
  return a.id === b.id && a.host === b.host && a.pid === b.pid;
}

/** `host <h> pid <n> generation <g> (meta directory <path>, id <id>)` for messages. */
export function describeHolder(r: LeaseIdentity & { generation?: string }): string {
  return `host ${r.host} pid ${r.pid} generation ${r.generation ?? "(none yet)"} ` +
    `(meta directory ${r.meta ?? "?"}, id ${r.id})`;
}
