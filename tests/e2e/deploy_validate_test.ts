/**
 * deploy/validate.ts against Google Cloud Storage and Azure Blob Storage, run as its cron job
 * runs (a subprocess with read, net and env permission only, settings from its environment):
 *
 * - GCS: our JSON-API server requiring a bearer token, reached with a service-account key given
 *   as JSON in `LITESTREAM_VALIDATE_GCS_CREDENTIALS` (there is no key file on Deno Deploy);
 * - Azure: Azurite, with the account key in `LITESTREAM_AZURE_ACCOUNT_KEY`.
 *
 * The same built replica goes into both stores; each report must equal the one for the original
 * file replica (same generations, counts and latest checksum). A flipped byte in one WAL
 * segment then makes the run not ok, naming that object. URLs of stores the validator cannot
 * reach without a disk, and unusable GCS credentials, are one-line errors in the summary.
 */

import assert from "node:assert/strict";
import { relative } from "node:path";
import { tempDir } from "../support/poll.ts";
import { buildReplica, type BuiltObject } from "../support/replica_builder.ts";
import {
  serviceAccountKeyJson,
  serviceAccountKeys,
  startGcsServer,
} from "../support/gcs_server.ts";
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteClient, startAzurite } from "../support/azurite.ts";
import { runRestrictedValidate, type Summary } from "../support/deploy_validate.ts";
import { validateReplicas } from "../../deploy/validate.ts";
import { validateReplicaObjects } from "../../lib/validate/position.ts";
import { FileReplicaClient } from "../../replicas/file/client.ts";

/** A copy of `bytes` with the byte in the middle inverted (inside an LZ4 frame's payload). */
function flippedMiddle(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  copy[copy.length >> 1] ^= 0xff;
  return copy;
}

/** A run's reports with the replica's name left out, for comparison with the file replica's. */
function reports(summary: Summary) {
  return summary.replicas[0].generations.map(({ replica: _, ...r }) => r);
}

Deno.test("deploy/validate.ts validates GCS and Azure Blob Storage replicas from its environment", async (t) => {
  await using dir = await tempDir();
  const built = await buildReplica({
    dir: dir.path,
    generations: [{ indexes: [3, 2] }, { indexes: [2, 3], snapshotsAt: [0, 1] }],
  });
  const expected = (await validateReplicaObjects(built.url, new FileReplicaClient(built.root)))
    .map(({ replica: _, ...r }) => r);
  assert.ok(expected.length === 2 && expected.every((g) => g.ok), JSON.stringify(expected));
  const middleWal = built.objects.filter((o) => o.kind === "wal")[5];
  const nameOf = (o: BuiltObject) => `db/${relative(built.root, o.path)}`;

  await t.step(
    "GCS, with a service-account key in LITESTREAM_VALIDATE_GCS_CREDENTIALS",
    async () => {
      const keys = await serviceAccountKeys();
      await using gcs = startGcsServer({
        token: "deploy-token",
        serviceAccountKey: keys.publicPem,
      });
      for (const o of built.objects) gcs.put(gcs.bucket, nameOf(o), await Deno.readFile(o.path));
      const env = {
        LITESTREAM_VALIDATE_REPLICAS: `gcs://${gcs.bucket}/db`,
        LITESTREAM_VALIDATE_ENDPOINT: gcs.endpoint,
        LITESTREAM_VALIDATE_GCS_CREDENTIALS: serviceAccountKeyJson(keys.privatePem, gcs),
      };
      const healthy = await runRestrictedValidate(dir.path, env);
      assert.equal(healthy.summary.ok, true, healthy.detail);
      assert.deepEqual(reports(healthy.summary), expected, healthy.detail);
      assert.ok(gcs.requests.some((r) => r.startsWith("POST /token")), "the key was used");

      const name = nameOf(middleWal);
      gcs.put(gcs.bucket, name, flippedMiddle(await Deno.readFile(middleWal.path)));
      const damaged = await runRestrictedValidate(dir.path, env);
      assert.equal(damaged.summary.ok, false, damaged.detail);
      const errors = damaged.summary.replicas[0].generations.flatMap((g) => g.errors);
      assert.ok(errors.some((e) => e.includes(name)), `names ${name}: ${damaged.detail}`);
    },
  );

  await t.step("Azure Blob Storage, with the key in LITESTREAM_AZURE_ACCOUNT_KEY", async () => {
    await using azurite = await startAzurite();
    const container = await azurite.container("deploy");
    const abs = azuriteClient(azurite, container, "db");
    const put = (o: BuiltObject, bytes: Uint8Array) =>
      o.kind === "snapshot"
        ? abs.writeSnapshot(o.generation, o.index, ReadableStream.from([bytes]))
        : abs.writeWalSegment(o, ReadableStream.from([bytes]));
    for (const o of built.objects) await put(o, await Deno.readFile(o.path));
    const env = {
      LITESTREAM_VALIDATE_REPLICAS: `abs://${AZURITE_ACCOUNT}@${container}/db`,
      LITESTREAM_VALIDATE_ENDPOINT: azurite.endpoint,
      LITESTREAM_AZURE_ACCOUNT_KEY: AZURITE_KEY,
    };
    const healthy = await runRestrictedValidate(dir.path, env);
    assert.equal(healthy.summary.ok, true, healthy.detail);
    assert.deepEqual(reports(healthy.summary), expected, healthy.detail);

    await put(middleWal, flippedMiddle(await Deno.readFile(middleWal.path)));
    const damaged = await runRestrictedValidate(dir.path, env);
    assert.equal(damaged.summary.ok, false, damaged.detail);
    const errors = damaged.summary.replicas[0].generations.flatMap((g) => g.errors);
    const name = nameOf(middleWal);
    assert.ok(errors.some((e) => e.includes(name)), `names ${name}: ${damaged.detail}`);
  });

  await t.step("a URL it cannot validate and unusable credentials: one line each", async () => {
    const summary = await validateReplicas({
      LITESTREAM_VALIDATE_REPLICAS: "sftp://u@backup/srv/app, gcs://bucket/app",
      LITESTREAM_VALIDATE_GCS_CREDENTIALS: "{not json",
    });
    assert.equal(summary.ok, false);
    assert.deepEqual(summary.replicas.map((r) => r.error), [
      "sftp://u@backup/srv/app: sftp replicas cannot be validated here (s3, gcs and abs can)",
      "gcs://bucket/app: credentials in LITESTREAM_VALIDATE_GCS_CREDENTIALS: not valid JSON: " +
      "Expected property name or '}' in JSON at position 1 (line 1 column 2)",
    ]);
  });
});
