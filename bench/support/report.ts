/**
 * The scenario interface `bench/main.ts` runs and what a scenario reports: medians, the
 * `median (min–max)` cells of the tables, the peak-memory target every scenario shares, and the
 * Markdown rendering of a report.
 *
 * @module
 */

import { cpuS, type RunStats } from "./measure.ts";

/** What `bench/main.ts` passes to every scenario. */
export interface BenchContext {
  /** Measured runs per tool (after one unmeasured warm-up each). */
  runs: number;
  /** Prints a progress line (to stderr, so stdout stays the report). */
  log(message: string): void;
}

/** A benchmark target and whether this run met it. */
export interface TargetResult {
  description: string;
  met: boolean;
  /** The measured numbers behind the verdict. */
  detail: string;
}

/** What a scenario reports. */
export interface ScenarioReport {
  name: string;
  description: string;
  /** Facts about the input (sizes, counts), shown as a list. */
  facts: Record<string, string | number>;
  /** Median statistics per tool (or variant), one table row each, with the worst peak RSS. */
  rows: { label: string; stats: RunStats; maxRssMB: number }[];
  /** Correctness checks performed, each a one-line verdict. */
  checks: string[];
  targets: TargetResult[];
  /**
   * A table to print instead of `rows`, for scenarios whose numbers are not one process's wall
   * time (catch-up times, CPU over a window, request counts): a header and pre-formatted cells.
   */
  table?: { header: string[]; rows: string[][] };
  /** Runs per tool behind the medians, when the scenario chose its own number. */
  runs?: number;
}

/** A benchmark scenario; modules export a list of them for `bench/main.ts`. */
export interface Scenario {
  /** Short identifier, selectable on the command line (`deno task bench NAME...`). */
  name: string;
  /** One-line summary printed before the scenario runs. */
  summary: string;
  /** Measured runs per tool when `--runs` is not given (default 5). */
  defaultRuns?: number;
  run(ctx: BenchContext): Promise<ScenarioReport>;
}

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Element-wise medians of several runs. */
export function medianStats(runs: RunStats[]): RunStats {
  return {
    wallS: median(runs.map((r) => r.wallS)),
    userS: median(runs.map((r) => r.userS)),
    sysS: median(runs.map((r) => r.sysS)),
    maxRssMB: median(runs.map((r) => r.maxRssMB)),
  };
}

/** `median (min–max)` of `xs` with `digits` decimals; the range is left out for one run. */
export function medianRange(xs: number[], digits: number): string {
  const m = median(xs).toFixed(digits);
  if (xs.length < 2) return m;
  return `${m} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

/** Judged on the worst run: the limit is on peak memory, so every run must stay under it. */
export function rssTarget(rssMB: number[], limit: number): TargetResult {
  return {
    description: `ours peaks under ${limit} MB of memory in every run (peak RSS)`,
    met: Math.max(...rssMB) < limit,
    detail: `median ${median(rssMB).toFixed(1)} MB, worst run ${Math.max(...rssMB).toFixed(1)} MB`,
  };
}

/** Renders a scenario report as Markdown. */
export function formatReport(r: ScenarioReport, runs: number): string {
  const lines = [`### ${r.name}`, "", r.description, ""];
  for (const [k, v] of Object.entries(r.facts)) lines.push(`- ${k}: ${v}`);
  if (r.table) {
    lines.push(
      "",
      `Medians of ${r.runs ?? runs} runs per tool (a range is the lowest–highest run):`,
      "",
      `| ${r.table.header.join(" | ")} |`,
      `|---|${r.table.header.slice(1).map(() => "---:").join("|")}|`,
      ...r.table.rows.map((cells) => `| ${cells.join(" | ")} |`),
    );
  } else {
    pushRowsTable(lines, r, runs);
  }
  lines.push("", "Checks:", "");
  for (const c of r.checks) lines.push(`- ${c}`);
  lines.push("", "Targets:", "");
  if (r.targets.length === 0) lines.push("- none for this scenario");
  for (const t of r.targets) {
    lines.push(`- ${t.met ? "MET" : "NOT MET"}: ${t.description} (${t.detail})`);
  }
  lines.push("");
  return lines.join("\n");
}

function pushRowsTable(lines: string[], r: ScenarioReport, runs: number): void {
  lines.push(
    "",
    `Medians of ${runs} runs per tool (worst peak RSS: the highest of those runs):`,
    "",
    "| tool | wall (s) | CPU user+sys (s) | user (s) | sys (s) | peak RSS (MB) | worst peak RSS (MB) |",
    "|---|---:|---:|---:|---:|---:|---:|",
  );
  for (const { label, stats: s, maxRssMB } of r.rows) {
    lines.push(
      `| ${label} | ${s.wallS.toFixed(3)} | ${cpuS(s).toFixed(2)} | ${s.userS.toFixed(2)} | ` +
        `${s.sysS.toFixed(2)} | ${s.maxRssMB.toFixed(1)} | ${maxRssMB.toFixed(1)} |`,
    );
  }
}
