/**
 * The age decorator: a `ReplicaClient` that wraps any other client and encrypts every object it
 * writes (snapshots, WAL segments, checksum records) to the configured recipients, and decrypts
 * what it reads with the configured identities, as Litestream v0.3.13 does: the stored object is
 * the LZ4 frame encrypted with age, under its usual name. Names, listings and sizes (the stored,
 * encrypted size, as v0.3.13 lists them) pass through unchanged.
 *
 * Both directions stream through age's STREAM format (64 KiB chunks), so memory stays bounded
 * whatever the object's size. An object that does not start with age's header is passed through
 * as it is (a replica that had objects before `age` was configured stays readable; every object
 * is still checked by the LZ4 and WAL layers above).
 *
 * @module
 */

import { Decrypter, Encrypter } from "age-encryption";
import { CorruptionError, DecryptionError, LitestreamError } from "../../lib/errors.ts";
import { AGE_HEADER, startsAsAge } from "../../lib/age_header.ts";
import { chunksOf, copied, releasingStream } from "../../lib/os/fs.ts";
import type { Pos } from "../../lib/names.ts";
import type {
  LeaseObject,
  ReadOptions,
  RecordInfo,
  ReplicaClient,
  SnapshotInfo,
  WalSegmentInfo,
} from "../../lib/replica_client.ts";

/** The plaintext size of one chunk of age's STREAM payload. */
const STREAM_CHUNK = 64 * 1024;

/** Keys of an age decorator: strings already validated by the age library's parsers. */
export interface AgeClientOptions {
  /** Secret keys (`AGE-SECRET-KEY-1…`) for reading; none means reads of encrypted objects fail. */
  identities: string[];
  /** Public keys (`age1…`) for writing; none means writes fail. */
  recipients: string[];
  /** What to tell a user who reads without identities, e.g. which config key to set. */
  identitiesHint?: string;
  /** What to tell a user who writes without recipients. */
  recipientsHint?: string;
}

/** A `ReplicaClient` that stores every object age-encrypted in the client it wraps. */
export class AgeReplicaClient implements ReplicaClient {
  readonly #encrypter?: Encrypter;
  readonly #decrypter?: Decrypter;
  readonly #identities: number;

  /** Wraps `inner`; throws the age library's error for a key it cannot parse. */
  constructor(readonly inner: ReplicaClient, readonly options: AgeClientOptions) {
    if (options.recipients.length > 0) {
      this.#encrypter = new Encrypter();
      for (const r of options.recipients) this.#encrypter.addRecipient(r);
    }
    if (options.identities.length > 0) {
      this.#decrypter = new Decrypter();
      for (const i of options.identities) this.#decrypter.addIdentity(i);
    }
    this.#identities = options.identities.length;
  }

  /** The wrapped backend's type (`file`, `s3`, …). */
  get type(): string {
    return this.inner.type;
  }
  /** The wrapped backend's location. */
  get location(): string {
    return this.inner.location;
  }

  generations(): Promise<string[]> {
    return this.inner.generations();
  }
  snapshots(generation: string): Promise<SnapshotInfo[]> {
    return this.inner.snapshots(generation);
  }
  walSegments(
    generation: string,
    from?: { index: number; offset: number },
  ): Promise<WalSegmentInfo[]> {
    return this.inner.walSegments(generation, from);
  }

  /** Decrypts the snapshot as it streams; `options` (parallel ranged parts) go to the backend. */
  async readSnapshot(
    generation: string,
    index: number,
    options?: ReadOptions,
  ): Promise<ReadableStream<Uint8Array>> {
    const name = this.describe("snapshot", { generation, index, offset: 0 });
    return await this.#decrypt(await this.inner.readSnapshot(generation, index, options), name);
  }
  async readWalSegment(pos: Pos): Promise<ReadableStream<Uint8Array>> {
    return await this.#decrypt(await this.inner.readWalSegment(pos), this.describe("wal", pos));
  }

  async writeSnapshot(
    generation: string,
    index: number,
    data: ReadableStream<Uint8Array>,
  ): Promise<SnapshotInfo> {
    return await this.inner.writeSnapshot(generation, index, await this.#encrypt(data));
  }
  async writeWalSegment(pos: Pos, data: ReadableStream<Uint8Array>): Promise<WalSegmentInfo> {
    return await this.inner.writeWalSegment(pos, await this.#encrypt(data));
  }

  deleteSnapshot(generation: string, index: number): Promise<void> {
    return this.inner.deleteSnapshot(generation, index);
  }
  deleteWalSegments(segments: Pos[]): Promise<void> {
    return this.inner.deleteWalSegments(segments);
  }
  deleteGeneration(generation: string): Promise<void> {
    return this.inner.deleteGeneration(generation);
  }

  records(generation: string): Promise<RecordInfo[]> {
    return this.inner.records(generation);
  }
  async readRecord(generation: string, name: string): Promise<Uint8Array> {
    const stored = await this.inner.readRecord(generation, name);
    const plain = await this.#decrypt(
      ReadableStream.from([stored]),
      this.describeRecord(generation, name),
    );
    return await new Response(plain).bytes();
  }
  async writeRecord(generation: string, name: string, data: Uint8Array): Promise<RecordInfo> {
    return await this.inner.writeRecord(
      generation,
      name,
      await this.#encrypterOrThrow().encrypt(data),
    );
  }
  deleteRecords(generation: string, names: string[]): Promise<void> {
    return this.inner.deleteRecords(generation, names);
  }

  /**
   * The lease passes through unencrypted: it holds no database content (host, pid, generation),
   * and a replicator must read it before it can know whether it may write.
   */
  readLease(): Promise<LeaseObject | undefined> {
    return this.inner.readLease();
  }

  /** Compare-and-swap of the lease on the wrapped store, unencrypted (see `readLease`). */
  writeLease(data: Uint8Array, expected: string | undefined): Promise<string | undefined> {
    return this.inner.writeLease(data, expected);
  }

  describe(kind: "snapshot" | "wal", pos: Pos): string {
    return this.inner.describe(kind, pos);
  }
  describeRecord(generation: string, name: string): string {
    return this.inner.describeRecord(generation, name);
  }

  /** Closes the wrapped client where it holds connections. */
  async close(): Promise<void> {
    await (this.inner as { close?: () => Promise<void> }).close?.();
  }

  #encrypterOrThrow(): Encrypter {
    if (this.#encrypter) return this.#encrypter;
    throw new LitestreamError(
      `${this.location}: cannot write: no age recipients configured` +
        (this.options.recipientsHint ? ` (${this.options.recipientsHint})` : ""),
    );
  }

  /**
   * Encrypts `data`; the library's 64 KiB output chunks are freed as soon as they are written.
   * The library encrypts each chunk it is given to the end before it takes the next, so the
   * (4 MiB) LZ4 blocks go in as 64 KiB copies: one block's whole ciphertext is never queued at
   * once.
   */
  async #encrypt(data: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
    const encrypter = this.#encrypterOrThrow();
    const pieces = ReadableStream.from(copied(chunksOf(data), STREAM_CHUNK));
    return releasingStream(await encrypter.encrypt(pieces));
  }

  /**
   * Decrypts `stored` (the object `name`) as a stream. Errors about the keys or the header come
   * from this call; errors in the payload (truncated, altered) from the stream, as
   * `CorruptionError`s naming the object; the source's own errors pass through unchanged.
   */
  async #decrypt(
    stored: ReadableStream<Uint8Array>,
    name: string,
  ): Promise<ReadableStream<Uint8Array>> {
    const source = new TrackedSource(stored);
    let head: Uint8Array;
    try {
      head = await source.peek(AGE_HEADER.length);
    } catch (err) {
      await source.cancel();
      throw err;
    }
    if (!startsAsAge(head)) return source.stream();
    if (!this.#decrypter) {
      await source.cancel();
      throw new DecryptionError(
        name,
        "the object is age-encrypted and no age identities are configured" +
          (this.options.identitiesHint ? ` (${this.options.identitiesHint})` : ""),
        true,
      );
    }
    let plain: ReadableStream<Uint8Array>;
    try {
      plain = await this.#decrypter.decrypt(source.stream());
    } catch (err) {
      await source.cancel();
      if (source.error !== undefined) throw source.error;
      const msg = err instanceof Error ? err.message : String(err);
      if (/no identity matched/.test(msg)) {
        const n = this.#identities;
        throw new DecryptionError(
          name,
          `no identity matched (${n} age ${n === 1 ? "identity" : "identities"} tried)`,
        );
      }
      throw new CorruptionError(name, `bad age header: ${msg}`);
    }
    const reader = plain.getReader();
    // The library's 64 KiB output chunks are freed as soon as the consumer has taken them.
    return releasingStream(
      new ReadableStream<Uint8Array>({
        async pull(ctrl) {
          try {
            const { value, done } = await reader.read();
            if (done) ctrl.close();
            else ctrl.enqueue(value);
          } catch (err) {
            await source.cancel();
            if (source.error !== undefined) return ctrl.error(source.error);
            const msg = err instanceof Error ? err.message : String(err);
            ctrl.error(new CorruptionError(name, `age payload does not authenticate (${msg})`));
          }
        },
        async cancel(reason) {
          await reader.cancel(reason).catch(() => {});
          await source.cancel();
        },
      }, { highWaterMark: 0 }),
    );
  }
}

/**
 * A stored object's stream read through one reader that this module keeps: the first bytes can
 * be looked at, the source can always be cancelled (even while the age library holds the
 * stream built on it), and its own failure is kept apart from decryption failures.
 */
class TrackedSource {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #head: Uint8Array[] = [];
  #cancelled = false;
  /** The source's own error, once it failed. */
  error: unknown;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Reads until at least `n` bytes (or the end) are held, and returns them (kept for the stream). */
  async peek(n: number): Promise<Uint8Array> {
    let held = this.#head.reduce((sum, c) => sum + c.length, 0);
    while (held < n) {
      const { value, done } = await this.#read();
      if (done) break;
      this.#head.push(value);
      held += value.length;
    }
    const all = new Uint8Array(held);
    let at = 0;
    for (const c of this.#head) {
      all.set(c, at);
      at += c.length;
    }
    return all;
  }

  /** The whole object: the peeked bytes, then the rest. */
  stream(): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (ctrl) => {
        const first = this.#head.shift();
        if (first) return ctrl.enqueue(first);
        const { value, done } = await this.#read();
        if (done) ctrl.close();
        else ctrl.enqueue(value);
      },
      cancel: () => this.cancel(),
    }, { highWaterMark: 0 });
  }

  /** Cancels the source (once); never throws. */
  async cancel(): Promise<void> {
    if (this.#cancelled) return;
    this.#cancelled = true;
    await this.#reader.cancel().catch(() => {});
  }

  async #read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    try {
      return await this.#reader.read();
    } catch (err) {
      this.error = err;
      throw err;
    }
  }
}
