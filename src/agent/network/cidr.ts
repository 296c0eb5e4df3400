/**
 * IPv4 subnets as the allocation network uses them: `172.26.64.0/20` → the bridge's gateway is the
 * first address, allocations take the others by index (1 = the gateway, 2… = allocations), the last
 * is the broadcast address. Pure.
 */
import { InvalidError } from '../../core/errors.ts';

export interface Subnet {
  /** The network address as a 32-bit unsigned number. */
  base: number;
  prefix: number;
  /** `172.26.64.0/20`, normalised. */
  cidr: string;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** `a.b.c.d` → a 32-bit unsigned number; undefined when it is not a dotted IPv4 address. */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Parses `a.b.c.d/p` for an allocation subnet: a prefix from /16 (65,533 allocations) to /28 (13),
 * host bits zero. Throws InvalidError saying what to write.
 */
export function parseSubnet(text: string, field = 'subnet'): Subnet {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text.trim());
  const addr = m ? parseIPv4(m[1] as string) : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (addr === undefined || !(prefix >= 16 && prefix <= 28))
    throw new InvalidError(
      `${field}: expected an IPv4 subnet from /16 to /28, e.g. 172.26.64.0/20, got "${text}"`,
    );
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  if ((addr & ~mask) >>> 0 !== 0) {
    const base = formatIPv4((addr & mask) >>> 0);
    throw new InvalidError(`${field}: "${text}" has host bits set; did you mean ${base}/${prefix}?`);
  }
  return { base: addr, prefix, cidr: `${formatIPv4(addr)}/${prefix}` };
}

/** How many addresses the subnet holds, network and broadcast included. */
export function subnetSize(s: Subnet): number {
  return 2 ** (32 - s.prefix);
}

/** The address at `index` (0 = the network address). */
export function addressAt(s: Subnet, index: number): string {
  return formatIPv4((s.base + index) >>> 0);
}

/** The bridge's own address: the first usable one. */
export function gatewayOf(s: Subnet): string {
  return addressAt(s, 1);
}

/** The indexes allocations may take: from 2 (after the gateway) to the one before the broadcast. */
export function allocationIndexes(s: Subnet): { first: number; last: number } {
  return { first: 2, last: subnetSize(s) - 2 };
}

/** Whether two subnets share an address. */
export function overlaps(a: { base: number; prefix: number }, b: { base: number; prefix: number }): boolean {
  const p = Math.min(a.prefix, b.prefix);
  const mask = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}
