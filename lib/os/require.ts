/**
 * Synchronous `require` of CommonJS npm packages, for dependencies loaded only when first
 * used (the YAML parser, the LZ4 WASM module).
 *
 * @module
 */

/**
 * `require` for a CommonJS npm package, through Node's module API. Taken from the `process`
 * global only when called: importing `node:module` would load several MB of Node
 * compatibility code into every process.
 */
export function requireSync(specifier: string): unknown {
  const process = (globalThis as unknown as {
    process: { getBuiltinModule(id: "module"): typeof import("node:module") };
  }).process;
  return process.getBuiltinModule("module").createRequire(import.meta.url)(specifier);
}
