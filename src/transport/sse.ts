/** Server-Sent Events: one response that stays open and carries named events. */
import type { ServerResponse } from 'node:http';

export interface SseStream {
  /** One event; `data` is sent as JSON; `id` lets a client resume (`Last-Event-ID`). */
  send(event: string, data: unknown, id?: number): void;
  /** A comment line: keeps proxies from timing the stream out. */
  comment(text: string): void;
}

/** Opens a Server-Sent Events response (headers flushed at once, no buffering by proxies). */
export function openSse(res: ServerResponse): SseStream {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  return {
    send(event, data, id) {
      res.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    comment(text) {
      res.write(`: ${text}\n\n`);
    },
  };
}
