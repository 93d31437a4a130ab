/**
 * Reading List Blobs answers (replicas/abs/listing.ts): names with escaped and percent-encoded
 * characters, sizes, creation times (else last-modified), virtual directories and the next
 * marker; an answer that is not a listing, or a blob without its fields, is an error.
 */

import assert from "node:assert/strict";
import { LitestreamError } from "../../lib/errors.ts";
import { throwsWith } from "../test_streams.ts";
import { parseListPage } from "./listing.ts";

const page = (body: string, next = "<NextMarker />") =>
  `\uFEFF<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://x/" ` +
  `ContainerName="c"><Prefix>p/</Prefix><MaxResults>5000</MaxResults><Blobs>${body}</Blobs>` +
  `${next}</EnumerationResults>`;

const blob = (name: string, props: string) =>
  `<Blob>${name}<Properties>${props}<Content-Type>application/octet-stream</Content-Type>` +
  `</Properties><OrMetadata /></Blob>`;

Deno.test("parseListPage: names, sizes, times, prefixes and the next marker", () => {
  const xml = page(
    blob(
      "<Name>p/a &amp; b&lt;&#x41;&#66;.lz4</Name>",
      "<Creation-Time>Sat, 05 Dec 2026 07:33:00 GMT</Creation-Time>" +
        "<Last-Modified>Sat, 05 Dec 2026 07:34:00 GMT</Last-Modified><Content-Length>42</Content-Length>",
    ) +
      blob(
        '<Name Encoded="true">p/%EF%BF%BF%20x</Name>',
        "<Last-Modified>Sat, 05 Dec 2026 07:35:00 GMT</Last-Modified><Content-Length>0</Content-Length>",
      ) +
      "<BlobPrefix><Name>p/gen&amp;1/</Name></BlobPrefix>",
    "<NextMarker>2!88!MDAw</NextMarker>",
  );
  assert.deepEqual(parseListPage(xml, "abs://a@c/p"), {
    objects: [
      { key: "p/a & b<AB.lz4", size: 42, createdAt: new Date("2026-12-05T07:33:00Z") },
      { key: "p/\uFFFF x", size: 0, createdAt: new Date("2026-12-05T07:35:00Z") },
    ],
    prefixes: ["p/gen&1/"],
    nextMarker: "2!88!MDAw",
  });
  assert.deepEqual(parseListPage(page(""), "u"), { objects: [], prefixes: [], nextMarker: "" });
});

Deno.test("parseListPage: what is not a listing, or a blob missing a field, is an error", () => {
  throwsWith(
    () => parseListPage("<html>proxy error</html>", "abs://a@c/p"),
    LitestreamError,
    "abs://a@c/p: LIST failed",
  );
  throwsWith(
    () => parseListPage(page(blob("<Name>x</Name>", "<Content-Length>1</Content-Length>")), "u"),
    LitestreamError,
    "a blob without a name, size or time",
  );
});
