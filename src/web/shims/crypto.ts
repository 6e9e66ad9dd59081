/**
 * The one part of Node's `crypto` the library uses in the browser: `createHash("sha256")` (the base
 * model's fingerprint, which an editor checks), on @noble/hashes' audited SHA-256. The lab's bundle
 * maps `crypto` here (scripts/build-lab.mjs); anything else from `crypto` is an error that says so.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js";

export function createHash(algorithm: string): { update(data: string | Uint8Array): ReturnType<typeof createHash>; digest(encoding: "hex"): string } {
  if (algorithm !== "sha256") throw new Error(`crypto.createHash("${algorithm}") is not available in the browser lab (only sha256)`);
  const h = sha256.create();
  const self = {
    update(data: string | Uint8Array) {
      h.update(typeof data === "string" ? utf8ToBytes(data) : data);
      return self;
    },
    digest(encoding: "hex") {
      if (encoding !== "hex") throw new Error(`digest("${encoding}") is not available in the browser lab (only "hex")`);
      return bytesToHex(h.digest());
    },
  };
  return self;
}

export function randomBytes(): never {
  throw new Error("crypto.randomBytes is not available in the browser lab (nothing in it writes files)");
}
