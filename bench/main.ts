/**
 * `deno task bench [--runs N] [--json PATH] [SCENARIO...]`: runs the benchmark scenarios and
 * prints a Markdown report (progress goes to stderr). Without names, every scenario runs; without
 * `--runs`, each scenario runs its own default number of times (`Scenario.defaultRuns`, else 5).
 *
 * Scenarios live in modules that export `scenarios: Scenario[]` (see `support/report.ts`); add
 * a new module to {@link MODULES} to include it. The machinery they share is in `support/`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatReport, type Scenario, type ScenarioReport } from "./support/report.ts";
import * as restore from "./restore.ts";
import * as replicate from "./replicate.ts";
import * as s3 from "./s3.ts";
import * as sftp from "./sftp.ts";
import * as sftpManyDbs from "./sftp_many_dbs.ts";
import * as abs from "./abs.ts";
import * as gcs from "./gcs.ts";
import * as validate from "./validate.ts";
import * as appCheckpoint from "./app_checkpoint.ts";
import * as s3Restore from "./s3_restore.ts";
import * as follow from "./follow.ts";
import * as manyDbs from "./many_dbs.ts";

/** Every scenario module, in run order. */
const MODULES: { scenarios: Scenario[] }[] = [
  restore,
  replicate,
  s3,
  s3Restore,
  sftp,
  sftpManyDbs,
  abs,
  gcs,
  validate,
  appCheckpoint,
  follow,
  manyDbs,
];

const ALL: Scenario[] = MODULES.flatMap((m) => m.scenarios);

const USAGE = "usage: deno task bench [--runs N] [--json FILE] [--list] [SCENARIO...]\n" +
  "  --runs N     measured runs per tool (default: each scenario's own, mostly 5)\n" +
  "  --json FILE  also write every figure to FILE\n" +
  "  --list       list the scenarios and stop\n" +
  "Without SCENARIO, every scenario runs.";

function options(args: string[]) {
  return parseArgs({
    args,
    options: {
      runs: { type: "string" },
      json: { type: "string" },
      list: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
  });
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = options(args);
  } catch (err) {
    console.error(`bench: ${(err as Error).message.split(". ")[0]}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.list) {
    for (const s of ALL) console.log(`${s.name}\t${s.summary}`);
    return 0;
  }
  // Without --runs, each scenario runs its own default (5, or fewer for the long ones).
  const runsFlag = values.runs === undefined ? undefined : Number(values.runs);
  if (runsFlag !== undefined && (!Number.isInteger(runsFlag) || runsFlag < 1)) {
    console.error(`--runs must be a positive integer, not ${values.runs}`);
    return 1;
  }
  const unknown = positionals.filter((p) => !ALL.some((s) => s.name === p));
  if (unknown.length > 0) {
    console.error(`unknown scenario(s): ${unknown.join(", ")}; known: ${ALL.map((s) => s.name)}`);
    return 1;
  }
  const selected = positionals.length ? ALL.filter((s) => positionals.includes(s.name)) : ALL;
  const log = (m: string) => console.error(`${new Date().toISOString().slice(11, 19)} ${m}`);

  const reports: ScenarioReport[] = [];
  for (const scenario of selected) {
    const runs = runsFlag ?? scenario.defaultRuns ?? 5;
    log(`scenario ${scenario.name}: ${scenario.summary}`);
    const report = await scenario.run({ runs, log });
    reports.push({ ...report, runs });
    console.log(formatReport(report, runs));
  }
  if (values.json) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify({ date: new Date().toISOString(), runs: runsFlag, reports }, null, 2) + "\n",
    );
  }
  const missed = reports.filter((r) => r.targets.some((t) => !t.met)).map((r) => r.name);
  console.log(
    missed.length === 0 ? "All targets met." : `Targets not met in: ${missed.join(", ")}`,
  );
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
