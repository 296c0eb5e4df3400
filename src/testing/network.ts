/**
 * Allocation networks for tests: each test agent gets a bridge and a subnet of its own (tests run
 * side by side on one kernel), and removes them afterwards.
 */
import { randomInt } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { missingRoot, missingTools } from './tools.ts';

export interface TestNetwork {
  bridge: string;
  subnet: string;
}

/** A bridge name and a /24 that are unlikely to be taken (10.200-254.x.0/24). */
export function testNetwork(): TestNetwork {
  const bridge = `ut${randomInt(0x1000000).toString(16).padStart(6, '0')}`;
  return { bridge, subnet: `10.${200 + randomInt(55)}.${randomInt(256)}.0/24` };
}

/** Why allocation networks can not be tested here (a skip reason), or undefined. */
export function missingNetworkTools(): string | undefined {
  return missingRoot('an allocation network') ?? missingTools(['ip', 'nft', 'nsenter']);
}

/** Removes the bridge, its namespaces and its nftables table (what a test agent leaves). */
export function removeTestNetwork(n: Pick<TestNetwork, 'bridge'>): void {
  let names: string[] = [];
  try {
    names = readdirSync('/run/netns');
  } catch {
    // none
  }
  for (const ns of names) if (ns.startsWith(`${n.bridge}-`)) spawnSync('ip', ['netns', 'del', ns]);
  spawnSync('ip', ['link', 'del', n.bridge]);
  spawnSync('nft', ['delete', 'table', 'ip', `unum_${n.bridge}`]);
}
