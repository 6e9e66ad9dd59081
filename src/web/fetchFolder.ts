/**
 * A checkpoint folder fetched over HTTP in its own format: `manifest.json` (kind, and every file's
 * size and SHA-256) and the files it lists, each checked as the Node loader checks them
 * (checkpointFolder.ts `verifyFolder`), so a truncated, damaged or missing file is an error that
 * names the file, not a model that computes something else.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";

interface ManifestFile {
  bytes: number;
  sha256: string;
}

/** Fetch `url` as bytes; an error names the URL and the HTTP status. */
async function fetchBytes(url: string): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: could not be fetched (${(e as Error).message})`);
  }
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}${res.status === 404 ? " (file not found)" : ""}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * The files of the checkpoint folder at `url` (a URL ending in "/"), checked against its manifest.
 * `kinds`: the folder kinds accepted (manifest `kind`). `onFile` reports each file as it arrives.
 */
export async function fetchFolder(url: string, kinds: readonly string[], onFile?: (name: string, bytes: number) => void): Promise<Record<string, Uint8Array>> {
  const manifestUrl = new URL("manifest.json", url).href;
  let manifest: { format?: unknown; kind?: unknown; files?: unknown };
  try {
    manifest = JSON.parse(new TextDecoder().decode(await fetchBytes(manifestUrl)));
  } catch (e) {
    throw new Error(e instanceof SyntaxError ? `${manifestUrl}: not valid JSON (${e.message})` : (e as Error).message);
  }
  if (!manifest || manifest.format !== "mend-ts-folder") throw new Error(`${manifestUrl}: not a mend-ts folder manifest (format ${JSON.stringify(manifest?.format)})`);
  if (typeof manifest.kind !== "string" || !kinds.includes(manifest.kind)) throw new Error(`${manifestUrl}: a folder of kind ${JSON.stringify(manifest.kind)}, expected ${kinds.join(" or ")}`);
  const files = manifest.files;
  if (!files || typeof files !== "object" || Array.isArray(files)) throw new Error(`${manifestUrl}: "files" must map file names to {bytes, sha256}`);
  const out: Record<string, Uint8Array> = {};
  await Promise.all(
    Object.entries(files as Record<string, ManifestFile>).map(async ([name, want]) => {
      if (!/^[\w.-]+$/.test(name) || name.startsWith(".")) throw new Error(`${manifestUrl}: "${name}" is not a plain file name`);
      if (!want || !Number.isSafeInteger(want.bytes) || typeof want.sha256 !== "string") throw new Error(`${manifestUrl}: the entry of "${name}" needs "bytes" and "sha256"`);
      const fileUrl = new URL(name, url).href;
      const bytes = await fetchBytes(fileUrl);
      if (bytes.length !== want.bytes) throw new Error(`${fileUrl}: ${bytes.length} bytes, but the manifest says ${want.bytes}: the file is truncated or was changed`);
      const got = bytesToHex(sha256(bytes));
      if (got !== want.sha256) throw new Error(`${fileUrl}: its SHA-256 is ${got.slice(0, 12)}…, the manifest's ${want.sha256.slice(0, 12)}…: the file is damaged or was changed`);
      out[name] = bytes;
      onFile?.(name, bytes.length);
    }),
  );
  return out;
}

/** A JSON file at `url`, parsed; errors name the URL. */
export async function fetchJson(url: string): Promise<unknown> {
  const bytes = await fetchBytes(url);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${url}: not valid JSON (${(e as Error).message})`);
  }
}
