/**
 * The files whose POSIX locks this process holds through SQLite (the databases it replicates),
 * by device and inode. Closing any descriptor of such a file drops those locks (spec §10.1), so
 * code that opens files it did not open itself (a directory scan reading a header) asks here
 * first, whatever name the file goes by now: a database renamed while it is replicated keeps its
 * inode.
 *
 * @module
 */

/** Holders per `dev:ino`. */
const held = new Map<string, number>();

function keyOf(st: Deno.FileInfo): string | undefined {
  return st.dev !== null && st.ino !== null ? `${st.dev}:${st.ino}` : undefined;
}

/**
 * Notes that the file behind `file` carries SQLite's locks until the returned function is
 * called. Uses a sync `fstat`: an async call on the descriptor could drop the locks itself.
 */
export function holdFile(file: Deno.FsFile): () => void {
  const key = keyOf(file.statSync());
  if (!key) return () => {};
  held.set(key, (held.get(key) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const n = held.get(key)! - 1;
    if (n > 0) held.set(key, n);
    else held.delete(key);
  };
}

/** True when `path` names a file this process holds SQLite's locks on (a sync `stat`). */
export function isHeldFile(path: string): boolean {
  if (held.size === 0) return false;
  try {
    const key = keyOf(Deno.statSync(path));
    return key !== undefined && held.has(key);
  } catch {
    return false;
  }
}
