/**
 * Ports that programs of the host itself hold. A published port is a DNAT rule that takes precedence
 * over the host's own sockets: publishing port 22 would hand the host's SSH connections to a task.
 * The agent refuses to publish a port a host program holds, with an error that names it (as binding
 * it would have failed before allocations had their own network).
 *
 * First by trying to bind each port, TCP and UDP, on every address (IPv6 and IPv4 at once where the
 * host has IPv6): a system call in this process, microseconds. Only a port that can not be bound is
 * looked up in /proc/net's socket tables (time in proportion to every socket of the host): a bind
 * also fails for a port that a connection of the host uses as its own end (a client's port, or one
 * in TIME-WAIT), which DNAT does not disturb (conntrack keeps existing connections as they are).
 * Such a port is free to publish; a TCP listener or a bound, unconnected UDP socket is not.
 */
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';

function tcpFree(port: number, host: string): Promise<boolean | 'no-family'> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (err: NodeJS.ErrnoException) =>
      resolve(err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL' ? 'no-family' : false),
    );
    s.listen({ port, host, ipv6Only: false, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function udpFree(port: number, type: 'udp6' | 'udp4'): Promise<boolean | 'no-family'> {
  return new Promise((resolve) => {
    const s = createSocket({ type, ipv6Only: false });
    s.once('error', (err: NodeJS.ErrnoException) => {
      s.close();
      resolve(err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL' ? 'no-family' : false);
    });
    s.bind({ port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

async function portFree(port: number): Promise<boolean> {
  let tcp = await tcpFree(port, '::');
  if (tcp === 'no-family') tcp = await tcpFree(port, '0.0.0.0');
  if (tcp !== true) return false;
  let udp = await udpFree(port, 'udp6');
  if (udp === 'no-family') udp = await udpFree(port, 'udp4');
  return udp === true;
}

/** TCP LISTEN (0A) and unconnected UDP sockets (07) in a /proc/net table, by their local port. */
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

async function listening(procNet: string): Promise<Set<number>> {
  const read = (f: string) => readFile(`${procNet}/${f}`, 'utf8').catch(() => '');
  const [tcp, tcp6, udp, udp6] = await Promise.all(['tcp', 'tcp6', 'udp', 'udp6'].map(read));
  return new Set([
    ...listeningPorts(tcp ?? '', 'tcp'),
    ...listeningPorts(tcp6 ?? '', 'tcp'),
    ...listeningPorts(udp ?? '', 'udp'),
    ...listeningPorts(udp6 ?? '', 'udp'),
  ]);
}

/** Which of `ports` a program of the host listens on (TCP or UDP, IPv4 or IPv6). */
export async function hostPortsInUse(ports: readonly number[], procNet = '/proc/net'): Promise<number[]> {
  const free = await Promise.all(ports.map(portFree));
  const busy = ports.filter((_, i) => !free[i]);
  if (busy.length === 0) return [];
  const held = await listening(procNet);
  return busy.filter((p) => held.has(p));
}
