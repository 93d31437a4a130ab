/**
 * The litestream command line: parse the command, dispatch to its module,
 * print errors as one line and exit with v0.3.13's codes (0 ok, 1 error).
 *
 * @module
 */

import { explainPermission, FlagError, LitestreamError } from "./lib/errors.ts";
import { VERSION } from "./lib/version.ts";
import { flushLineStreams } from "./lib/log_stream.ts";

/** A command module: its usage text and its entry point. */
interface CommandModule {
  usage: string;
  run(args: string[]): Promise<number>;
}

const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  databases: () => import("./lib/cli/commands/databases.ts"),
  generations: () => import("./lib/cli/commands/generations.ts"),
  replicate: () => import("./lib/cli/commands/replicate.ts"),
  restore: () => import("./lib/cli/commands/restore.ts"),
  snapshots: () => import("./lib/cli/commands/snapshots.ts"),
  status: () => import("./lib/cli/commands/status.ts"),
  validate: () => import("./lib/cli/commands/validate.ts"),
  wal: () => import("./lib/cli/commands/wal.ts"),
};

const USAGE = `litestream is a tool for replicating SQLite databases.

Usage:

	litestream <command> [arguments]

The commands are:

	databases    list databases specified in config file
	generations  list available generations for a database
	replicate    runs a server to replicate databases
	restore      recovers database backup from a replica
	snapshots    list available snapshots for a database
	status       shows replication status, lag and health of every database
	validate     checks that replicas restore to the right bytes
	version      prints the binary version
	wal          list available WAL files for a database
`;

/** Runs the CLI with `args` and returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "help" || name.startsWith("-")) {
    console.log(USAGE);
    return 1;
  }
  if (name === "version") {
    console.log(VERSION);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`litestream ${name}: unknown command`);
    return 1;
  }
  const command = await load();
  if (rest.some((a) => a === "-h" || a === "-help" || a === "--help")) {
    console.log(command.usage);
    return 1;
  }
  try {
    return await command.run(rest);
  } catch (caught) {
    // The error line comes after what was logged before it.
    await flushLineStreams();
    const err = explainPermission(caught);
    if (err instanceof FlagError) {
      console.error(`error: ${err.message}`);
      console.error(command.usage);
      return 1;
    }
    if (err instanceof LitestreamError) {
      console.error(`error: ${err.message}`);
      return 1;
    }
    // The reader of our output (e.g. `restore -o - | head`) went away: nothing more to say.
    if (err instanceof Deno.errors.BrokenPipe) return 1;
    if (
      err instanceof Deno.errors.NotFound || err instanceof Deno.errors.PermissionDenied ||
      err instanceof Deno.errors.IsADirectory || err instanceof Deno.errors.NotADirectory ||
      err instanceof Deno.errors.AlreadyExists
    ) {
      // Deno's file-system errors already name the operation and the path.
      console.error(`error: ${(err as Error).message}`);
      return 1;
    }
    throw err;
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  await flushLineStreams();
  Deno.exit(code);
}
