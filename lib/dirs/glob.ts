/**
 * File-name patterns as Go's `filepath.Match` reads them (Litestream v0.5's `pattern`): `*`
 * any run of characters, `?` one character, `[abc]`, `[a-z]`, `[^a-z]` classes, `\` escapes
 * the next character. Matched against a file's name only, never a path. Pure.
 *
 * @module
 */

/** Compiles `pattern` to a matcher, or returns why it is malformed. */
export function compileGlob(pattern: string): ((name: string) => boolean) | string {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "\\") {
      if (i + 1 >= pattern.length) {
        return `malformed pattern ${JSON.stringify(pattern)}: trailing \\`;
      }
      re += escape(pattern[++i]);
    } else if (c === "[") {
      const end = classEnd(pattern, i + 1);
      if (end < 0) return `malformed pattern ${JSON.stringify(pattern)}: unclosed [`;
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith("^");
      if (negate) body = body.slice(1);
      if (body === "") return `malformed pattern ${JSON.stringify(pattern)}: empty [ ]`;
      re += `[${negate ? "^" : ""}${classBody(body)}]`;
      i = end;
    } else re += escape(c);
  }
  const compiled = new RegExp(re + "$", "u");
  return (name) => compiled.test(name);
}

/** Index of the `]` closing a class whose body starts at `from`, or -1. */
function classEnd(p: string, from: number): number {
  for (let i = from; i < p.length; i++) {
    if (p[i] === "\\") i++;
    else if (p[i] === "]" && i > from + (p[from] === "^" ? 1 : 0)) return i;
  }
  return -1;
}

/** A class body for RegExp: ranges kept, everything else literal. */
function classBody(body: string): string {
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i] === "\\" ? body[++i] ?? "" : body[i];
    out += c === "-" && out !== "" && i < body.length - 1 ? "-" : c.replace(/[\\\]\[^-]/g, "\\$&");
  }
  return out;
}

function escape(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
