/**
 * SDK clients shared by every replica client of one store: with a `dir` entry, a thousand
 * databases in one bucket are a thousand replica clients, and an SDK client each (about
 * 240 KB, its own connection pool, its own region look-up) made memory and start-up grow with
 * the number of databases. Replica clients with the same settings but their path (bucket,
 * endpoint, region, keys, TLS, tuning) share one, created on first use and destroyed with its
 * last user; each request still counts for the replica that sent it.
 *
 * @module
 */

import type { S3Client } from "@aws-sdk/client-s3";
import {
  countRequests,
  createSdkClient,
  type S3Counters,
  type S3Tuning,
  type SdkClients,
} from "./sdk.ts";
import type { S3Options } from "./url.ts";

interface Entry {
  client: Promise<SdkClients>;
  users: number;
}

const shared = new Map<string, Entry>();

/** One replica client's use of a shared SDK client. */
export interface SdkLease {
  /** The SDK clients, counting every request they send into this lease's counters. */
  client: Promise<SdkClients>;
  /** Ends the use; the SDK client is destroyed with its last user. */
  release(): void;
}

/** Takes the SDK client shared by the store of `options` (see the module doc). */
export function leaseSdkClient(
  options: S3Options,
  tuning: Required<S3Tuning>,
  counters: S3Counters,
  location: string,
): SdkLease {
  const key = JSON.stringify([{ ...options, path: "" }, tuning]);
  let entry = shared.get(key);
  if (!entry) {
    const created: Entry = {
      client: createSdkClient(options, tuning, counters, location, true),
      users: 0,
    };
    // A failed set-up (region look-up) is tried afresh by the next user.
    created.client.catch(() => shared.get(key) === created && shared.delete(key));
    shared.set(key, entry = created);
  }
  const e = entry;
  e.users++;
  let released = false;
  return {
    client: e.client.then(({ client, reader }) => ({
      client: counting(client, counters),
      reader: counting(reader, counters),
    })),
    release() {
      if (released) return;
      released = true;
      if (--e.users > 0) return;
      if (shared.get(key) === e) shared.delete(key);
      e.client.then(({ client, reader }) => {
        client.destroy();
        if (reader !== client) reader.destroy();
      }, () => {});
    },
  };
}

/** `client` with `send` counting each command's requests into `counters`. */
function counting(client: S3Client, counters: S3Counters): S3Client {
  return new Proxy(client, {
    get(target, prop) {
      if (prop === "send") {
        return (command: { middlewareStack: S3Client["middlewareStack"] }, ...rest: unknown[]) => {
          if (!counted.has(command)) countRequests(command.middlewareStack, counters);
          counted.add(command);
          return (target.send as (...a: unknown[]) => unknown)(command, ...rest);
        };
      }
      if (prop === "destroy") return () => {}; // the lease's release() decides
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** Commands whose requests are counted already (a command sent twice counts once per request). */
const counted = new WeakSet<object>();
