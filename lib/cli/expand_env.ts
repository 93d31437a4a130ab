/**
 * Environment expansion with the rules of Go's `os.ExpandEnv`, which v0.3.13
 * applies to the whole config text before parsing it.
 *
 * @module
 */

const SPECIAL = "*#$@!?-0123456789";
const isNameChar = (c: string) => /[A-Za-z0-9_]/.test(c);

/**
 * Replaces `$NAME` and `${NAME}` with `lookup(NAME)` (unset → empty). A `$`
 * not followed by a name stays; malformed `${` and `${}` are dropped, as in Go.
 */
export function expandEnv(text: string, lookup: (name: string) => string | undefined): string {
  let out = "";
  let i = 0;
  for (let j = 0; j < text.length; j++) {
    if (text[j] !== "$" || j + 1 >= text.length) continue;
    out += text.slice(i, j);
    const [name, width] = shellName(text.slice(j + 1));
    if (name === "" && width === 0) out += "$";
    else if (name !== "") out += lookup(name) ?? "";
    j += width;
    i = j + 1;
  }
  return out + text.slice(i);
}

/** Returns the variable name after a `$` and how many characters it spans. */
function shellName(s: string): [string, number] {
  if (s[0] === "{") {
    if (s.length > 2 && SPECIAL.includes(s[1]) && s[2] === "}") return [s[1], 3];
    const close = s.indexOf("}");
    if (close === 1) return ["", 2];
    if (close < 0) return ["", 1];
    return [s.slice(1, close), close + 1];
  }
  if (SPECIAL.includes(s[0])) return [s[0], 1];
  let n = 0;
  while (n < s.length && isNameChar(s[n])) n++;
  return [s.slice(0, n), n];
}
