/**
 * Test helper: the inotify instances a process holds, as Linux shows them in
 * `/proc/<pid>/fd` (links to `anon_inode:inotify`) and `/proc/<pid>/fdinfo`
 * (one `inotify wd:` line per watch).
 *
 * @module
 */

/** One inotify instance of a process: its descriptor and how many watches it holds. */
export interface InotifyInstance {
  fd: number;
  watches: number;
}

/** The inotify instances `pid` holds (default: this process), by descriptor. */
export async function inotifyInstances(pid: number | "self" = "self"): Promise<InotifyInstance[]> {
  const found: InotifyInstance[] = [];
  for await (const entry of Deno.readDir(`/proc/${pid}/fd`)) {
    const link = await Deno.readLink(`/proc/${pid}/fd/${entry.name}`).catch(() => "");
    if (link !== "anon_inode:inotify") continue;
    const info = await Deno.readTextFile(`/proc/${pid}/fdinfo/${entry.name}`).catch(() => "");
    found.push({
      fd: Number(entry.name),
      watches: info.split("\n").filter((l) => l.startsWith("inotify wd:")).length,
    });
  }
  return found.sort((a, b) => a.fd - b.fd);
}
