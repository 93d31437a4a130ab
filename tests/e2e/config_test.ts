/**
 * The configuration file seen from a user's side: `litestream databases` in a subprocess with
 * environment expansion, `-no-expand-env`, a wrong type and a `~` config path. The parsing rules
 * themselves are unit-tested in lib/cli/config_test.ts, duration_test.ts and expand_env_test.ts.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { describeResult, runLitestream } from "../support/cli.ts";
import { tempDir } from "../support/poll.ts";

Deno.test("config handling seen from the CLI", async (t) => {
  await using dir = await tempDir("config-cli-");
  const config = join(dir.path, "c.yml");
  await Deno.writeTextFile(
    config,
    `dbs:\n  - path: $LT_TEST_DIR/app.db\n    bogus-key: 1\n    replicas:\n` +
      `      - url: file://\${LT_TEST_DIR}/replica\n`,
  );
  const env = { LT_TEST_DIR: dir.path };

  await t.step("environment expansion, and a warning naming the unknown key", async () => {
    const res = await runLitestream(["databases", "-config", config], { env });
    assert.equal(res.code, 0, describeResult(res));
    assert.equal(
      res.out,
      `path${" ".repeat(dir.path.length + 5)}replicas\n${dir.path}/app.db  file\n`,
    );
    assert.match(res.err, /unknown key dbs\[0\]\.bogus-key/);
  });

  await t.step("-no-expand-env keeps $VARIABLES literally", async () => {
    const res = await runLitestream(["databases", "-no-expand-env", "-config", config], {
      env,
      cwd: dir.path,
    });
    assert.equal(res.code, 0, describeResult(res));
    assert.match(res.out, new RegExp(`^${dir.path}/\\$LT_TEST_DIR/app\\.db  file$`, "m"));
  });

  await t.step("a wrong type through the CLI: one line naming file and key", async () => {
    const bad = join(dir.path, "bad.yml");
    await Deno.writeTextFile(bad, "dbs:\n  - path: /a\n    checkpoint-interval: [1]\n");
    const res = await runLitestream(["databases", "-config", bad]);
    assert.equal(res.code, 1, describeResult(res));
    assert.equal(
      res.err,
      `error: ${bad}: dbs[0].checkpoint-interval: expected a duration such as 1s, 10m, 24h or 7d, got [1]\n`,
    );
  });

  await t.step("without --allow-env, a config file asks for that flag", async () => {
    const plain = join(dir.path, "plain.yml");
    await Deno.writeTextFile(plain, `dbs:\n  - path: ${dir.path}/app.db\n`);
    const res = await runLitestream(["databases", "-config", plain], {
      permissions: ["--allow-read"],
    });
    assert.equal(res.code, 1, describeResult(res));
    assert.match(res.err, /^error: missing Deno permission: .*; run again with --allow-env\n$/);
  });

  await t.step("the config path is ~-expanded", async () => {
    // HOME also locates Deno's cache: keep that where it is.
    const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
    const { denoDir } = JSON.parse(new TextDecoder().decode(info.stdout));
    const res = await runLitestream(["databases", "-config", "~/c.yml"], {
      env: { HOME: dir.path, DENO_DIR: denoDir, ...env },
    });
    assert.equal(res.code, 0, describeResult(res));
    assert.match(res.out, /app\.db {2}file/);
  });
});
