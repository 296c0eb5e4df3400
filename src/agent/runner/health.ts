/**
 * The group's service health checks, run by the agent against the allocation's own ports on
 * 127.0.0.1: `http` (GET, any 2xx within the timeout passes) or `tcp` (a connection is accepted).
 * An allocation is healthy once every check's latest run passed.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import type { ServiceSpec } from '../../core/job-spec.ts';
import type { Logger } from '../../core/log.ts';
import type { AllocatedPort } from '../../core/types.ts';

export interface CheckTarget {
  service: string;
  type: 'http' | 'tcp';
  /** Undefined when the allocation got no port of that name (the check then fails). */
  port: number | undefined;
  portName: string;
  path?: string;
  intervalMs: number;
  timeoutMs: number;
}

export interface CheckResult {
  ok: boolean;
  /** Why it failed, or what passed ("HTTP 200"). */
  output: string;
}

/** The checks of a group, resolved against the allocation's ports. */
export function checkTargets(
  services: readonly ServiceSpec[],
  ports: readonly AllocatedPort[],
): CheckTarget[] {
  const out: CheckTarget[] = [];
  for (const s of services) {
    if (s.check === undefined) continue;
    const t: CheckTarget = {
      service: s.name,
      type: s.check.type,
      port: ports.find((p) => p.name === s.port)?.value,
      portName: s.port,
      intervalMs: s.check.interval,
      timeoutMs: s.check.timeout,
    };
    if (s.check.path !== undefined) t.path = s.check.path;
    out.push(t);
  }
  return out;
}

/** Runs one check once. Never rejects. */
export function runCheck(t: CheckTarget, host = '127.0.0.1'): Promise<CheckResult> {
  if (t.port === undefined)
    return Promise.resolve({ ok: false, output: `the allocation has no port named "${t.portName}"` });
  return t.type === 'http'
    ? httpCheck(host, t.port, t.path ?? '/', t.timeoutMs)
    : tcpCheck(host, t.port, t.timeoutMs);
}

function httpCheck(host: string, port: number, path: string, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    const req = request(
      { host, port, path, method: 'GET', agent: false, signal: AbortSignal.timeout(timeoutMs) },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        resolve({ ok: status >= 200 && status < 300, output: `HTTP ${status}` });
        req.destroy();
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, output: describeNetError(err, timeoutMs) }),
    );
    req.end();
  });
}

function tcpCheck(host: string, port: number, timeoutMs: number): Promise<CheckResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ ok: false, output: `no connection within ${timeoutMs}ms` });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok: true, output: 'connected' });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ ok: false, output: describeNetError(err, timeoutMs) });
    });
  });
}

function describeNetError(err: NodeJS.ErrnoException, timeoutMs: number): string {
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${timeoutMs}ms`;
  if (err.code === 'ECONNREFUSED') return 'connection refused';
  if (err.code === 'ECONNRESET') return 'connection reset';
  return err.code ?? err.message;
}

export interface HealthSnapshot {
  healthy: boolean;
  /** The first failing check, worded for people; undefined when healthy. */
  failing?: string;
}

/**
 * Runs every check at once and then every `interval`, and calls `onChange` when the overall verdict
 * or the reason of a failure changes.
 */
export class HealthWatcher {
  private readonly targets: CheckTarget[];
  private readonly results: (CheckResult | undefined)[];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly onChange: (s: HealthSnapshot) => void;
  private readonly logger: Logger;
  private running = false;
  private last: string | undefined;

  /** Where the checks connect: the allocation's own address when it has its network (default 127.0.0.1). */
  private readonly host: () => string | undefined;

  constructor(
    targets: CheckTarget[],
    onChange: (s: HealthSnapshot) => void,
    logger: Logger,
    host: () => string | undefined = () => undefined,
  ) {
    this.host = host;
    this.targets = targets;
    this.results = targets.map(() => undefined);
    this.onChange = onChange;
    this.logger = logger;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.targets.forEach((_, i) => void this.tick(i));
  }

  stop(): void {
    this.running = false;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  snapshot(): HealthSnapshot {
    for (const [i, t] of this.targets.entries()) {
      const r = this.results[i];
      if (r === undefined)
        return { healthy: false, failing: `check of service "${t.service}" has not run yet` };
      if (!r.ok) return { healthy: false, failing: `check of service "${t.service}" failing: ${r.output}` };
    }
    return { healthy: true };
  }

  private async tick(i: number): Promise<void> {
    const target = this.targets[i];
    if (!this.running || target === undefined) return;
    const result = await runCheck(target, this.host());
    if (!this.running) return;
    const before = this.results[i];
    this.results[i] = result;
    if (before?.ok !== result.ok)
      this.logger.info(
        { service: target.service, ok: result.ok, output: result.output },
        'health check changed',
      );
    const snap = this.snapshot();
    const key = JSON.stringify(snap);
    if (key !== this.last) {
      this.last = key;
      this.onChange(snap);
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.tick(i);
    }, target.intervalMs);
    this.timers.add(timer);
  }
}
