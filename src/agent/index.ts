/**
 * The agent: one per machine. Registers the node, keeps it alive, runs the allocations the servers
 * assign to it and serves their logs. See README.md for the flow.
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import { resolve } from 'node:path';
import { InvalidError, type FieldProblem } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { Agent } from './agent.ts';
import { allocsRoot } from './alloc-dir.ts';
import { loadNodeId } from './fingerprint.ts';
import { DEFAULT_AGENT_HTTP_ADDR, DEFAULT_PORT_RANGE, parseHostPort } from './options.ts';

export interface AgentOptions {
  /** Agent state under <dataDir>/agent (node id file, alloc dirs). */
  dataDir: string;
  /** Server base URLs, e.g. ['http://127.0.0.1:8686']. */
  servers: string[];
  /** host:port of the agent's own HTTP endpoint; default 127.0.0.1:8687; port 0 = any free. */
  httpAddr?: string;
  /** Node name; default os.hostname(). */
  name?: string;
  logger?: Logger;
  /** raw_exec driver off unless enabled. */
  enableRawExec?: boolean;
  /** Kept for the host. */
  reserved?: { cpu: number; memory: number };
  /** Dynamic ports, default 20000-32000. */
  portRange?: { min: number; max: number };
}

export interface RunningAgent {
  nodeId: string;
  /** The agent's HTTP base URL, e.g. http://127.0.0.1:8687. */
  address: string;
  /** Stops tasks too (graceful shutdown). */
  stop(): Promise<void>;
}

/**
 * Starts an agent. Rejects with InvalidError (naming the option) on bad options; a server that can
 * not be reached yet is not an error: the agent keeps trying to register in the background.
 */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const problems: FieldProblem[] = [];
  const http = parseHostPort(options.httpAddr ?? DEFAULT_AGENT_HTTP_ADDR);
  if (http === undefined)
    problems.push({
      path: 'httpAddr',
      message: `expected host:port, got ${JSON.stringify(options.httpAddr)}`,
    });
  if (options.servers.length === 0)
    problems.push({ path: 'servers', message: 'expected at least one server address' });
  const portRange = options.portRange ?? DEFAULT_PORT_RANGE;
  if (
    !Number.isInteger(portRange.min) ||
    !Number.isInteger(portRange.max) ||
    portRange.min < 1 ||
    portRange.max > 65535 ||
    portRange.min > portRange.max
  )
    problems.push({
      path: 'portRange',
      message: `expected 1 <= min <= max <= 65535, got ${portRange.min}-${portRange.max}`,
    });
  const reserved = options.reserved ?? { cpu: 0, memory: 0 };
  for (const k of ['cpu', 'memory'] as const)
    if (!Number.isInteger(reserved[k]) || reserved[k] < 0)
      problems.push({
        path: `reserved.${k}`,
        message: `expected a whole number, 0 or more, got ${reserved[k]}`,
      });
  if (problems.length > 0 || http === undefined)
    throw InvalidError.fromFields(problems, 'invalid agent options');

  const dataDir = resolve(options.dataDir);
  await mkdir(allocsRoot(dataDir), { recursive: true });
  const nodeId = await loadNodeId(dataDir);
  const agent = new Agent({
    dataDir,
    servers: options.servers,
    nodeId,
    name: options.name ?? os.hostname(),
    http,
    logger: options.logger ?? createLogger('agent'),
    enableRawExec: options.enableRawExec ?? false,
    reserved: { cpu: reserved.cpu, memory: reserved.memory },
    portRange: { min: portRange.min, max: portRange.max },
  });
  await agent.start();
  return { nodeId, address: agent.address, stop: () => agent.stop() };
}
