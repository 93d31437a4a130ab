/**
 * Blob listings (flat, or by hierarchy with `/` as delimiter) across pages, and the name the
 * service stores for a key.
 *
 * @module
 */

import type { BlobItem, ContainerClient } from "@azure/storage-blob";
import type { ListedObject, Listing } from "../object_store.ts";

/**
 * Every blob under `prefix` (a service name) and, by hierarchy, every virtual directory
 * (`prefixes`, ending in `/`), across pages; `onPage` is called per page requested.
 */
export async function listBlobs(
  container: ContainerClient,
  prefix: string,
  hierarchy: boolean,
  onPage: () => void,
): Promise<Listing> {
  const objects: ListedObject[] = [];
  const prefixes: string[] = [];
  const add = (items: BlobItem[]) => {
    for (const b of items) {
      const p = b.properties;
      // Creation-Time, as v0.3.13 reports it (Last-Modified where absent).
      objects.push({
        key: b.name,
        size: p.contentLength ?? 0,
        createdAt: p.createdOn ?? p.lastModified,
      });
    }
  };
  const pages = hierarchy
    ? container.listBlobsByHierarchy("/", { prefix }).byPage({ maxPageSize: 5000 })
    : container.listBlobsFlat({ prefix }).byPage({ maxPageSize: 5000 });
  for await (const page of pages) {
    onPage();
    add(page.segment.blobItems);
    const segment = page.segment as { blobPrefixes?: { name: string }[] };
    prefixes.push(...(segment.blobPrefixes ?? []).map((p) => p.name));
  }
  return { objects, prefixes };
}

/**
 * The name the service stores for `key`: Blob Storage reads a `\\` in a blob URL as `/`, so a
 * path holding one is stored (and must be listed) with `/`. Names in messages keep the
 * configured spelling.
 */
export function serviceName(key: string): string {
  return key.replaceAll("\\", "/");
}
