/**
 * Escaping for the two places text meets HTML here: element content and attribute values
 * (`escapeHtml`), and data written into a `<script>` block (`scriptJson`). Labels of figures and
 * tables can come from dataset files, so nothing is written into a page unescaped.
 */

/** Text as HTML element content or a quoted attribute value: & < > " ' escaped. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

/**
 * A value as JSON safe inside `<script>`: `<`, `>` and `&` as \u escapes (so no `</script>` or
 * `<!--` can end or change the block), and U+2028 / U+2029 (line terminators in older JavaScript).
 */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/>/g, "\\u003e")
    .replace(/&/g, "\\u0026")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}
