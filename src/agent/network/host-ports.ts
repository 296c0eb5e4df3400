/**
 * Ports that programs of the host itself hold. A published port is a DNAT rule that takes precedence
 * over the host's own sockets: publishing port 22 would hand the host's SSH connections to a task.
 * The agent refuses to publish a port a host program holds, with an error that names it (as binding
 * it would have failed before allocations had their own network).
 *
 * Found by trying to bind each port, TCP and UDP, on every address (IPv6 and IPv4 at once where the
 * host has IPv6): the kernel refuses a port someone listens on, on any address. A bind is a system
 * call in this process, microseconds; reading /proc/net's socket tables instead costs time in
 * proportion to every socket of the host.
 */
import { createSocket } from 'node:dgram';
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

/** Which of `ports` a program of the host holds (TCP or UDP, IPv4 or IPv6). */
export async function hostPortsInUse(ports: readonly number[]): Promise<number[]> {
  const free = await Promise.all(ports.map(portFree));
  return ports.filter((_, i) => !free[i]);
}
