/**
 * Ports that programs of the host itself listen on (its network namespace's /proc/net tables).
 * A published port is a DNAT rule that takes precedence over the host's own sockets: publishing
 * port 22 would hand the host's SSH connections to a task. The agent refuses to publish a port a
 * host program listens on, with an error that names it (as binding it would have failed before
 * allocations had their own network).
 */
import { readFile } from 'node:fs/promises';

/** TCP LISTEN (0A) and bound UDP sockets (07), by the port of their local address. */
export function listeningPorts(table: string, proto: 'tcp' | 'udp'): Set<number> {
  const state = proto === 'tcp' ? '0A' : '07';
  const out = new Set<number>();
  for (const line of table.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const local = cols[1];
    if (local === undefined || cols[3] !== state) continue;
    const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
    if (Number.isInteger(port) && port > 0) out.add(port);
  }
  return out;
}

/** Which of `ports` a program of the host listens on (TCP or UDP, IPv4 or IPv6). */
export async function hostPortsInUse(ports: readonly number[], procNet = '/proc/net'): Promise<number[]> {
  if (ports.length === 0) return [];
  const read = (f: string) => readFile(`${procNet}/${f}`, 'utf8').catch(() => '');
  const [tcp, tcp6, udp, udp6] = await Promise.all(['tcp', 'tcp6', 'udp', 'udp6'].map(read));
  const used = new Set<number>([
    ...listeningPorts(tcp ?? '', 'tcp'),
    ...listeningPorts(tcp6 ?? '', 'tcp'),
    ...listeningPorts(udp ?? '', 'udp'),
    ...listeningPorts(udp6 ?? '', 'udp'),
  ]);
  return ports.filter((p) => used.has(p));
}
