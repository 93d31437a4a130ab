/**
 * Blob listings (flat, or by hierarchy with `/` as delimiter) across pages, and the name the
 * service stores for a key. Listings are List Blobs requests sent with `fetch` and a list SAS
 * (see `download.ts` for why not the SDK), their XML read for the few fields a replica needs.
 *
 * @module
 */

import type { StorageSharedKeyCredential } from "@azure/storage-blob";
import type { ListedObject, Listing } from "../object_store.ts";
import { LitestreamError } from "../../lib/errors.ts";
import { getWithRetries, readSas } from "./download.ts";
import type { AbsTuning } from "./sdk.ts";

/** The container to list. */
export interface ContainerRef {
  /** The container's URL (escaped, without a query). */
  containerUrl: string;
  container: string;
  credential: StorageSharedKeyCredential;
  tuning: Required<AbsTuning>;
  /** `abs://…` URL of what is listed, for errors. */
  url: string;
}

/** Blobs per page, the service's maximum. */
const PAGE_SIZE = 5000;

/**
 * Every blob under `prefix` (a service name) and, by hierarchy, every virtual directory
 * (`prefixes`, ending in `/`), across pages; `onPage` is called per page requested.
 */
export async function listBlobs(
  ref: ContainerRef,
  prefix: string,
  hierarchy: boolean,
  onPage: () => void,
): Promise<Listing> {
  const objects: ListedObject[] = [];
  const prefixes: string[] = [];
  const sas = readSas(ref.credential, ref.container);
  let marker = "";
  do {
    const q = new URLSearchParams({ restype: "container", comp: "list", prefix });
    q.set("maxresults", String(PAGE_SIZE));
    if (hierarchy) q.set("delimiter", "/");
    if (marker) q.set("marker", marker);
    onPage();
    const res = await getWithRetries(
      `${ref.containerUrl}?${q}&${sas}`,
      {},
      ref.tuning,
      "LIST",
      ref.url,
    );
    const page = parseListPage(await res.text(), ref.url);
    objects.push(...page.objects);
    prefixes.push(...page.prefixes);
    marker = page.nextMarker;
  } while (marker);
  return { objects, prefixes };
}

/** One page of a List Blobs answer. */
export interface ListPage extends Listing {
  /** Where the next page starts; `""` after the last. */
  nextMarker: string;
}

/**
 * The blobs (name, Content-Length, Creation-Time or else Last-Modified, as v0.3.13 reports
 * them), virtual directories and next marker of a List Blobs answer (`EnumerationResults`).
 * A blob without a name, size or time is an error naming `url`: a listing read wrong must not
 * pass for a replica's contents.
 */
export function parseListPage(xml: string, url: string): ListPage {
  const bad = (what: string) =>
    new LitestreamError(`${url}: LIST failed: unexpected answer (${what})`);
  if (!/<EnumerationResults[\s>]/.test(xml)) throw bad("no EnumerationResults");
  const objects: ListedObject[] = [];
  for (const [, blob] of xml.matchAll(/<Blob>([\s\S]*?)<\/Blob>/g)) {
    const key = nameOf(blob);
    const size = Number(element(blob, "Content-Length"));
    const time = element(blob, "Creation-Time") ?? element(blob, "Last-Modified");
    const createdAt = new Date(time ?? NaN);
    if (key === undefined || !Number.isSafeInteger(size) || isNaN(createdAt.getTime())) {
      throw bad(`a blob without a name, size or time: ${blob.slice(0, 200)}`);
    }
    objects.push({ key, size, createdAt });
  }
  const prefixes: string[] = [];
  for (const [, p] of xml.matchAll(/<BlobPrefix>([\s\S]*?)<\/BlobPrefix>/g)) {
    const name = nameOf(p);
    if (name === undefined) throw bad("a prefix without a name");
    prefixes.push(name);
  }
  return { objects, prefixes, nextMarker: element(xml, "NextMarker") ?? "" };
}

/**
 * The blob name in `xml` (`<Name>`, or `<Name Encoded="true">` percent-encoded, as the service
 * sends names with characters XML cannot carry).
 */
function nameOf(xml: string): string | undefined {
  const m = /<Name( Encoded="true")?>([\s\S]*?)<\/Name>/.exec(xml);
  if (!m) return undefined;
  const text = unescapeXml(m[2]);
  return m[1] ? decodeURIComponent(text) : text;
}

/** The text of the first `<tag>…</tag>` in `xml` (unescaped), if any. */
function element(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(xml);
  return m ? unescapeXml(m[1]) : undefined;
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** XML text with its entity and character references resolved. */
function unescapeXml(s: string): string {
  return s.replace(
    /&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g,
    (_, ref: string) =>
      ref[0] !== "#" ? ENTITIES[ref] : String.fromCodePoint(
        parseInt(ref.slice(ref[1] === "x" ? 2 : 1), ref[1] === "x" ? 16 : 10),
      ),
  );
}

/**
 * The name the service stores for `key`: Blob Storage reads a `\\` in a blob URL as `/`, so a
 * path holding one is stored (and must be listed) with `/`. Names in messages keep the
 * configured spelling.
 */
export function serviceName(key: string): string {
  return key.replaceAll("\\", "/");
}
