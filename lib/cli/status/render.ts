/**
 * `status` as text for an 80-column terminal: a block per database, a few labelled lines per
 * replica. Every line is cut to 80 columns (long paths keep their end); problems and errors,
 * which lead with a long URL, continue on up to 3 more lines; `-json` has the facts in full.
 *
 * @module
 */

import type { DbStatus, ReplicaStatus, Status } from "./collect.ts";

const WIDTH = 80;
/** Lines a problem or an error may take. */
const MAX_WRAPPED = 4;

/** Renders the status as text lines (no trailing newline). */
export function renderStatus(s: Status, now = Date.parse(s.time)): string {
  const out: string[] = [];
  const source = s.live ? `figures live from replicate at ${s.live}` : "figures from files";
  out.push(fit(`${s.healthy ? "OK" : "NOT OK"} (${source})`));
  for (const db of s.dbs) out.push("", ...renderDb(db, now));
  return out.join("\n");
}

function renderDb(db: DbStatus, now: number): string[] {
  const lines = [fitPath(db.path, `: ${db.healthy ? "ok" : "NOT OK"}`)];
  if (db.problem) lines.push(...wrapped("  problem   ", db.problem));
  let local = db.localPosition ?? "-";
  if (db.pendingBytes) local += ` + ${bytes(db.pendingBytes)} not copied yet`;
  lines.push(fit(`  local     ${local}`));
  if (db.note) lines.push(fit(`  note      ${db.note}`));
  if (db.source === "live") {
    lines.push(fit(`  synced    ${when(db.lastSyncAt, now)}`));
    if (db.lastError) lines.push(...wrapped("  error     ", errorText(db.lastError, now)));
  }
  for (const r of db.replicas) lines.push(...renderReplica(r, now));
  return lines;
}

function renderReplica(r: ReplicaStatus, now: number): string[] {
  const lines = [
    fit(`  replica ${r.name} (${r.location || r.type}): ${r.healthy ? "ok" : "NOT OK"}`),
  ];
  if (r.problem) lines.push(...wrapped("    problem  ", r.problem));
  const lag = r.lagBytes === null && r.lagMs === null
    ? "unknown"
    : `${r.lagBytes === null ? "? bytes" : bytes(r.lagBytes)}, ${
      r.lagMs === null ? "?" : age(r.lagMs)
    }`;
  lines.push(fit(`    position ${r.position ?? "-"} (lag ${lag})`));
  lines.push(fit(`    synced   ${when(r.lastSyncAt, now)}`));
  if (r.lastError) lines.push(...wrapped("    error    ", errorText(r.lastError, now)));
  if (r.storeError) lines.push(...wrapped("    store    ", r.storeError));
  lines.push(fit(
    `    gen      ${r.generation ?? "-"}${
      r.generationStart ? ` since ${r.generationStart.slice(0, 19)}Z` : ""
    }`,
  ));
  lines.push(fit(`    snapshot ${when(r.newestSnapshotAt, now)}`));
  const w = r.restoreWindow;
  lines.push(
    fit(`    restore  ${w ? `${w.oldest.slice(0, 19)}Z .. ${w.newest.slice(0, 19)}Z` : "-"}`),
  );
  return lines;
}

function when(iso: string | null, now: number): string {
  if (!iso) return "-";
  return `${iso.slice(0, 19)}Z (${age(Math.max(0, now - Date.parse(iso)))} ago)`;
}

function errorText(e: { message: string; at: string }, now: number): string {
  return `${when(e.at, now).replace(/^\S+ /, "")} ${e.message.replace(/\s+/g, " ")}`;
}

/** A short age: 850ms, 12s, 3m4s, 5h2m, 3d4h. */
export function age(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor(s % 3600 / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor(s % 86400 / 3600)}h`;
}

/** Bytes with a binary unit: 0 B, 812 B, 4.0 KiB, 12.5 MiB. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/**
 * `prefix` then `text` in lines of 80 columns, continued under the text's first column and
 * broken at spaces where one is near; at most {@link MAX_WRAPPED} lines, the last cut with "…".
 */
function wrapped(prefix: string, text: string): string[] {
  const room = WIDTH - prefix.length;
  const lines: string[] = [];
  let rest = text;
  while (rest && lines.length < MAX_WRAPPED) {
    let cut = rest.length <= room ? rest.length : rest.lastIndexOf(" ", room);
    if (cut < room / 2) cut = Math.min(room, rest.length);
    lines.push((lines.length ? " ".repeat(prefix.length) : prefix) + rest.slice(0, cut));
    rest = rest.slice(cut).trimStart();
  }
  if (rest) lines.push(fit(`${lines.pop()} ${rest}`));
  return lines;
}

function fit(line: string): string {
  return line.length <= WIDTH ? line : line.slice(0, WIDTH - 1) + "…";
}

/** `path` + `suffix` in 80 columns, cutting the path's beginning rather than its end. */
function fitPath(path: string, suffix: string): string {
  const room = WIDTH - suffix.length;
  return (path.length <= room ? path : "…" + path.slice(path.length - room + 1)) + suffix;
}
