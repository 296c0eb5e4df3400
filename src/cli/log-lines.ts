/**
 * The pure part of `unum logs`: log streams arrive in arbitrary chunks, several at once; people
 * want whole lines, each tagged with the instance it came from, the tags padded so the text lines
 * up. A `LogMux` turns chunks from many sources into such lines; nothing here does I/O.
 */
import type { Allocation } from '../core/types.ts';
import { shortId } from '../core/ids.ts';
import { printable } from './output.ts';

/**
 * Splits a stream of chunks into whole lines, keeping the unfinished tail until it is complete. Each
 * chunk is scanned once and the pieces of an unfinished line are joined once, when it ends: a line of
 * 100 MB arriving in 64 KiB chunks costs time linear in its length, not quadratic.
 */
export class LineBuffer {
  private pieces: string[] = [];

  /** The lines completed by this chunk (without their line ends). */
  push(chunk: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', start)) {
      let line = chunk.slice(start, nl);
      if (this.pieces.length > 0) {
        this.pieces.push(line);
        line = this.pieces.join('');
        this.pieces = [];
      }
      lines.push(stripCR(line));
      start = nl + 1;
    }
    if (start < chunk.length) this.pieces.push(chunk.slice(start));
    return lines;
  }

  /** At the end of the stream: the last line if it had no line end. */
  flush(): string | undefined {
    const rest = this.pieces.join('');
    this.pieces = [];
    return rest === '' ? undefined : stripCR(rest);
  }
}

function stripCR(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/** `3f9a1c2e web.web[0]`, plus `/task` when the group runs several tasks. */
export function logTag(alloc: Pick<Allocation, 'id' | 'name'>, task: string, taskCount: number): string {
  return `${shortId(alloc.id)} ${alloc.name}${taskCount > 1 ? `/${task}` : ''}`;
}

/** `[tag]   line`: the tag in brackets, padded to `width` so that the lines start in one column. */
export function tagLine(
  tag: string,
  width: number,
  line: string,
  style: (s: string) => string = (s) => s,
): string {
  const pad = ' '.repeat(Math.max(0, width - tag.length));
  return `${style(`[${tag}]`)}${pad} ${line}`;
}

export interface LogSource {
  /** A chunk of the stream; complete lines are written at once. */
  push(chunk: string): void;
  /** The stream ended: writes what is left of its last line. */
  end(): void;
}

export interface LogMuxOptions {
  /** Tag each line (false: raw lines, as from a single task). */
  prefix: boolean;
  /** Receives each finished output line, with its newline. */
  write(text: string): void;
  /** Colors a tag (the number tells sources apart). */
  style?: (n: number, tag: string) => string;
  /** Lines as the task wrote them, control characters included (default: shown as escapes, see printable). */
  raw?: boolean;
}

/**
 * Merges many log streams into tagged whole lines. Each source keeps its own partial line, so lines of
 * two streams never mix; tags are padded to the widest tag seen so far.
 */
export class LogMux {
  private width = 0;
  private sources = 0;
  private readonly options: LogMuxOptions;

  constructor(options: LogMuxOptions) {
    this.options = options;
  }

  /** A new stream tagged `tag`. Several sources may share a tag (stdout and stderr of one task). */
  source(tag: string, colorKey?: number): LogSource {
    const n = colorKey ?? this.sources;
    this.sources++;
    this.width = Math.max(this.width, tag.length);
    const buffer = new LineBuffer();
    const emit = (text: string) => {
      const line = this.options.raw === true ? text : printable(text);
      if (!this.options.prefix) return this.options.write(`${line}\n`);
      const style = this.options.style;
      this.options.write(`${tagLine(tag, this.width, line, style ? (s) => style(n, s) : undefined)}\n`);
    };
    return {
      push: (chunk) => {
        for (const line of buffer.push(chunk)) emit(line);
      },
      end: () => {
        const last = buffer.flush();
        if (last !== undefined) emit(last);
      },
    };
  }
}
