import assert from "node:assert/strict";
import { SFTP_STATUS, SftpError } from "./errors.ts";

/** An ssh2 request error carrying SFTP status `code`. */
const status = (code: number) => Object.assign(new Error("status"), { code });

Deno.test("SftpError: only the server's PERMISSION_DENIED is an access refusal (the lease turns off)", () => {
  const denied = new SftpError("LIST", "sftp://u@h:22/r/lease", "Permission denied", false, {
    cause: status(SFTP_STATUS.PERMISSION_DENIED),
  });
  assert.equal(denied.accessDenied, true);
  for (const code of [SFTP_STATUS.NO_SUCH_FILE, SFTP_STATUS.FAILURE]) {
    assert.equal(
      new SftpError("PUT", "u", "x", false, { cause: status(code) }).accessDenied,
      false,
    );
  }
  assert.equal(new SftpError("connect", "u", "refused", true).accessDenied, false);
});
