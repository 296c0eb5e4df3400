/** A sleep that `wake()` ends early (and that ends at once after `close()`). */
export class Sleeper {
  private timer: NodeJS.Timeout | undefined;
  private resolve: (() => void) | undefined;
  private closed = false;

  sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => this.wake(), ms);
    });
  }
  wake(): void {
    clearTimeout(this.timer);
    const r = this.resolve;
    this.resolve = undefined;
    r?.();
  }
  close(): void {
    this.closed = true;
    this.wake();
  }
}
