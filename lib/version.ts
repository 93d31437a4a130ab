/**
 * The version this build reports.
 *
 * @module
 */

/** Version string printed by `litestream version`. */
export const VERSION = "v0.1.0-deno";
