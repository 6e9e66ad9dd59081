/**
 * Reading the JSON files users hand over (model and editor configs, request lists, datasets,
 * manifests): a UTF-8 byte-order mark is dropped (editors on Windows write one), and every error
 * names the file.
 */
import * as fs from "fs";

/** The parsed contents of a JSON file; errors name the file (missing, unreadable, not JSON). */
export function readJsonFile(file: string): unknown {
  if (!fs.existsSync(file)) throw new Error(`${file}: file not found`);
  if (fs.statSync(file).isDirectory()) throw new Error(`${file}: a folder, not a JSON file`);
  return parseJson(fs.readFileSync(file, "utf8"), file);
}

/** JSON text (a leading BOM dropped) parsed; errors name `where`. */
export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
  }
}
