/**
 * A one-line progress bar for long loops (pretraining, editor training). On a TTY it redraws in
 * place; elsewhere (CI, notebooks via callbacks) it prints a line at most every `everySec` seconds.
 */
export class ProgressBar {
  private lastPrint = 0;
  private readonly start = Date.now();

  constructor(
    private readonly total: number,
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly everySec = 5,
  ) {}

  update(done: number, fields: Record<string, string | number>, force = false): void {
    const now = Date.now();
    const tty = Boolean(this.stream.isTTY);
    if (!force && !tty && now - this.lastPrint < this.everySec * 1000) return;
    if (!force && tty && now - this.lastPrint < 100) return;
    this.lastPrint = now;
    const frac = Math.min(1, done / Math.max(1, this.total));
    const width = 24;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, ".");
    const f = Object.entries(fields).map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v) : v}`).join("  ");
    const line = `${this.label} [${bar}] ${done}/${this.total}  ${f}  ${((now - this.start) / 1000).toFixed(0)}s`;
    if (tty) this.stream.write(`\r${line}\x1b[K`);
    else this.stream.write(line + "\n");
  }

  done(): void {
    if (this.stream.isTTY) this.stream.write("\n");
  }
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 0.01 ? v.toFixed(3) : v.toExponential(2);
}
