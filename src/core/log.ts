/** Structured logs (pino, JSON lines on stderr). Object ids go in fields, never only in text. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env['UNUM_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: false }));
}

/** A logger that drops everything: for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
