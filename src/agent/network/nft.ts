/**
 * The agent's nftables table (Debian's `nftables`, driven through `nft -f -`: the kernel's own
 * firewall, no netfilter code of unum's own). One table per bridge, `ip unum_<bridge>`:
 *
 *   prerouting, output   a connection to a published port on any of the host's addresses (also
 *                        127.0.0.1, from the host itself) goes to the allocation that owns it
 *   postrouting          allocations reach the outside through NAT; connections published on
 *                        127.0.0.1 and those from an allocation back to a published port (hairpin)
 *                        are masqueraded so that the answers come back the same way
 *   input                nothing from the bridge reaches the host itself (the agent's and server's
 *                        APIs, sshd, …) except answers to the host's own connections
 *   forward              from the bridge: out; to the bridge: answers and published ports only
 *
 * Published ports live in two maps (`tcp_ports`, `udp_ports`: port → allocation address), changed
 * element by element as allocations come and go. Pure: text in, text out.
 */

export interface NftTable {
  /** `unum_<bridge>` */
  name: string;
  bridge: string;
  /** The allocation subnet, CIDR. */
  subnet: string;
}

export interface Published {
  ip: string;
  ports: readonly number[];
}

export function tableName(bridge: string): string {
  return `unum_${bridge.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

function elements(published: readonly Published[]): string {
  const pairs = published.flatMap((p) => p.ports.map((port) => `${port} : ${p.ip}`));
  return pairs.join(', ');
}

/**
 * The whole table, replacing any earlier one in the same transaction (`nft -f` applies a file
 * atomically): the published ports of the allocations already running are in it from the start.
 */
export function tableRuleset(t: NftTable, published: readonly Published[] = []): string {
  const br = JSON.stringify(t.bridge);
  const el = elements(published);
  const map = (proto: string) =>
    `  map ${proto}_ports {\n    type inet_service : ipv4_addr\n${el === '' ? '' : `    elements = { ${el} }\n`}  }`;
  return [
    `table ip ${t.name} {}`,
    `delete table ip ${t.name}`,
    `table ip ${t.name} {`,
    map('tcp'),
    map('udp'),
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    '    fib daddr type local dnat ip to tcp dport map @tcp_ports',
    '    fib daddr type local dnat ip to udp dport map @udp_ports',
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    '    fib daddr type local dnat ip to tcp dport map @tcp_ports',
    '    fib daddr type local dnat ip to udp dport map @udp_ports',
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${t.subnet} oifname != ${br} masquerade`,
    `    ip saddr 127.0.0.0/8 oifname ${br} masquerade`,
    `    ip saddr ${t.subnet} oifname ${br} ct status dnat masquerade`,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname ${br} ct state established,related accept`,
    // Refused at once rather than dropped: a task learns straight away that the host is closed.
    `    iifname ${br} meta l4proto tcp reject with tcp reset`,
    `    iifname ${br} reject`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    iifname ${br} accept`,
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} ct status dnat accept`,
    `    oifname ${br} drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Adds (or removes) an allocation's published ports, TCP and UDP. Empty when it publishes none. */
export function portsCommand(t: NftTable, p: Published, op: 'add' | 'delete'): string {
  if (p.ports.length === 0) return '';
  const keys = op === 'add' ? elements([p]) : p.ports.join(', ');
  return ['tcp', 'udp'].map((proto) => `${op} element ip ${t.name} ${proto}_ports { ${keys} }\n`).join('');
}

/** Removes the table (an agent that gives up its bridge network). */
export function deleteTableCommand(t: NftTable): string {
  return `table ip ${t.name} {}\ndelete table ip ${t.name}\n`;
}
