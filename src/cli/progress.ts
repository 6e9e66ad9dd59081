/**
 * Terminal progress for the long commands (pretraining, editor training), on cli-progress: one bar
 * with the run's figures. On a TTY it redraws in place; elsewhere (CI, logs) it prints a line at
 * most every `everySec` seconds, and on every `force` (validation steps).
 */
import { SingleBar } from "cli-progress";

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  if (!Number.isFinite(v)) return "-";
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 0.01 ? v.toFixed(3) : v.toExponential(2);
}

export class ProgressBar {
  private readonly bar: SingleBar;
  private started = false;
  private lastLine = 0;
  private readonly tty: boolean;

  constructor(
    private readonly total: number,
    label: string,
    stream: NodeJS.WriteStream = process.stderr,
    private readonly everySec = 5,
  ) {
    this.tty = Boolean(stream.isTTY);
    this.bar = new SingleBar({
      format: `${label} [{bar}] {value}/{total}  {fields}  {duration}s`,
      barCompleteChar: "#",
      barIncompleteChar: ".",
      barsize: 24,
      stream,
      hideCursor: false,
      noTTYOutput: true, // a line per render off a TTY (CI, logs)
      notTTYSchedule: everySec * 1000,
    });
  }

  /** Steps done and the figures to show (numbers are formatted). `force` draws now (validation steps). */
  update(done: number, fields: Record<string, string | number>, force = false): void {
    const payload = { fields: Object.entries(fields).map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v) : v}`).join("  ") };
    if (!this.started) {
      this.bar.start(this.total, done, payload);
      this.started = true;
      this.lastLine = Date.now();
      return;
    }
    this.bar.update(done, payload);
    // The training loops rarely yield to timers, so draw from here: throttled, or now when forced.
    const now = Date.now();
    if (force || now - this.lastLine >= (this.tty ? 100 : this.everySec * 1000)) {
      this.lastLine = now;
      this.bar.render();
    }
  }

  done(): void {
    if (this.started) this.bar.stop();
    this.started = false;
  }
}
