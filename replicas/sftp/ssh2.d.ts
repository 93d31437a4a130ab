/**
 * The part of npm `ssh2`'s API this backend uses, typed here: `@types/ssh2`
 * pulls in `@types/node` 18, whose declarations replace Deno's own node types
 * for the whole program (and lack `node:sqlite`).
 *
 * @module
 */

import type { EventEmitter } from "node:events";
import type { Buffer } from "node:buffer";
import type { Duplex } from "node:stream";

/** A request callback: an error, or the result. */
type Cb<T = void> = (err: Error | undefined, value: T) => void;

/** File attributes of a STAT or a directory entry (times in seconds). */
export interface Stats {
  mode: number;
  size: number;
  mtime: number;
  atime: number;
  isDirectory(): boolean;
  isFile(): boolean;
}

/** One directory entry. */
export interface FileEntryWithStats {
  filename: string;
  longname: string;
  attrs: Stats;
}

/** An SFTP channel. */
export interface SFTPWrapper extends EventEmitter {
  open(path: string, flags: string, attrs: { mode?: number }, cb: Cb<Buffer>): void;
  open(path: string, flags: string, cb: Cb<Buffer>): void;
  close(handle: Buffer, cb: Cb): void;
  read(
    handle: Buffer,
    buf: Buffer,
    off: number,
    len: number,
    position: number,
    cb: (err: Error | undefined, bytesRead: number) => void,
  ): void;
  write(handle: Buffer, buf: Buffer, off: number, len: number, position: number, cb: Cb): void;
  fstat(handle: Buffer, cb: Cb<Stats>): void;
  stat(path: string, cb: Cb<Stats>): void;
  lstat(path: string, cb: Cb<Stats>): void;
  readdir(path: string, cb: Cb<FileEntryWithStats[]>): void;
  mkdir(path: string, cb: Cb): void;
  rmdir(path: string, cb: Cb): void;
  unlink(path: string, cb: Cb): void;
  rename(from: string, to: string, cb: Cb): void;
  ext_openssh_rename(from: string, to: string, cb: Cb): void;
  ext_openssh_fsync(handle: Buffer, cb: Cb): void;
  ext_openssh_hardlink(target: string, link: string, cb: Cb): void;
  ext_openssh_statvfs(path: string, cb: Cb<{ f_bavail: number; f_frsize: number }>): void;
}

/** Connection settings (the subset used). */
export interface ConnectConfig {
  /** The connected stream to speak SSH over (ssh2 opens none of its own). */
  sock?: Duplex;
  username: string;
  password?: string;
  privateKey?: Buffer;
  readyTimeout?: number;
  keepaliveInterval?: number;
  keepaliveCountMax?: number;
  algorithms?: {
    cipher?: { remove?: string; prepend?: string };
    serverHostKey?: { prepend: string[] };
  };
  hostVerifier?: (key: Buffer) => boolean;
}

/** An SSH client connection. */
export class Client extends EventEmitter {
  connect(config: ConnectConfig): this;
  sftp(cb: (err: Error | undefined, sftp: SFTPWrapper) => void): this;
  end(): this;
}
