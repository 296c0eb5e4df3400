/**
 * A progress line: on a terminal it is rewritten in place; elsewhere (CI logs, pipes) each change is
 * printed once on its own line, so logs read as a history.
 */
import type { Out } from './output.ts';

export class Progress {
  private last: string | undefined;
  private open = false;
  private readonly out: Out;
  private readonly enabled: boolean;

  constructor(out: Out, enabled = true) {
    this.out = out;
    this.enabled = enabled;
  }

  /** Shows `line` if it differs from the last one shown. */
  update(line: string): void {
    if (!this.enabled || line === this.last) return;
    this.last = line;
    if (this.out.isTTY) {
      this.out.write(`\r\x1b[2K${line}`);
      this.open = true;
    } else this.out.write(`${line}\n`);
  }

  /** Ends the rewritten line so that what follows starts on a fresh one. */
  done(): void {
    if (this.open) this.out.write('\n');
    this.open = false;
  }
}
