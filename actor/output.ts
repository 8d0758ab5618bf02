/**
 * An actor's piped stdout or stderr, read while the actor starts.
 *
 * Until `spawnActor` resolves, nobody holds the handle, so nobody can read the actor's pipes:
 * an actor that prints more than a pipe holds (64 KiB) before it calls `actorContext()`
 * would block, and never start. So the parent reads them meanwhile and keeps what it read;
 * once the handle is handed out, reading stops, and the stream it exposes yields what was
 * kept, then the rest, only as fast as its reader asks (so an actor whose output nobody reads
 * blocks, as with any pipe, instead of filling the parent's memory). What was kept also lets
 * a failed start report the end of the actor's stderr.
 *
 * @module
 */

/** A piped output stream of an actor (see the module doc). */
export class StartupOutput {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #kept: Uint8Array[] = [];
  #capturing = true;
  #ended = false;
  /** The reading loop of the start: settles once it has stopped (or the stream ended). */
  readonly #captured: Promise<void>;

  /** Starts reading `source`, the child's piped stream. */
  constructor(source: ReadableStream<Uint8Array>) {
    this.#reader = source.getReader();
    this.#captured = this.#capture();
  }

  async #capture(): Promise<void> {
    try {
      while (this.#capturing) {
        const { done, value } = await this.#reader.read();
        if (done) {
          this.#ended = true;
          return;
        }
        this.#kept.push(value);
      }
    } catch {
      this.#ended = true; // Cancelled, or the pipe broke: nothing more to read.
    }
  }

  /** Stops reading ahead: the handle is handed out, its user reads from now on. A read
   * already under way still completes, and its bytes are kept. */
  stopCapturing(): void {
    this.#capturing = false;
  }

  /**
   * Waits up to `ms` for the stream to end (the actor exited: unless a process it started
   * still holds the pipe), then returns the last `maxBytes` bytes kept, as text.
   */
  async tail(ms: number, maxBytes: number): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#captured,
      new Promise<void>((resolve) => timer = setTimeout(resolve, ms)),
    ]);
    clearTimeout(timer);
    const all = new Uint8Array(this.#kept.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const chunk of this.#kept) {
      all.set(chunk, at);
      at += chunk.length;
    }
    return new TextDecoder().decode(all.subarray(Math.max(0, all.length - maxBytes)));
  }

  /** What was kept, then the rest of the stream, read on demand. */
  readonly stream: ReadableStream<Uint8Array> = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      // What was kept goes out at once. Only then the read of the start still under way: its
      // bytes come after those, and the reader must not be shared with it.
      let kept = this.#kept.shift();
      if (kept === undefined) {
        await this.#captured;
        kept = this.#kept.shift();
      }
      if (kept !== undefined) return controller.enqueue(kept);
      if (this.#ended) return controller.close();
      const { done, value } = await this.#reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: async (reason) => {
      this.#kept.length = 0;
      this.#capturing = false;
      await this.#reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
