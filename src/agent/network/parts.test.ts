import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, createServer, type AddressInfo } from 'node:net';
import { addressAt, allocationIndexes, gatewayOf, overlaps, parseIPv4, parseSubnet } from './cidr.ts';
import { hostPortsInUse, listeningPorts } from './host-ports.ts';
import { portsCommand, tableName, tableRuleset } from './nft.ts';

describe('allocation subnets', () => {
  it('parse, give the gateway and the allocations their addresses', () => {
    const s = parseSubnet('172.26.64.0/20');
    assert.equal(s.cidr, '172.26.64.0/20');
    assert.equal(gatewayOf(s), '172.26.64.1');
    assert.equal(addressAt(s, 2), '172.26.64.2');
    assert.deepEqual(allocationIndexes(s), { first: 2, last: 4094 });
    assert.equal(addressAt(s, 4094), '172.26.79.254');
  });
  it('refuse what is not a subnet, with what to write', () => {
    assert.throws(() => parseSubnet('172.26.64.1/20'), /host bits set; did you mean 172\.26\.64\.0\/20/);
    assert.throws(() => parseSubnet('10.0.0.0/8'), /from \/16 to \/28/);
    assert.throws(() => parseSubnet('300.1.1.0/24'), /expected an IPv4 subnet/);
    assert.throws(() => parseSubnet('fd00::/64'), /expected an IPv4 subnet/);
    assert.equal(parseIPv4('01.2.3.4'), undefined);
  });
  it('know when two overlap', () => {
    const a = parseSubnet('10.1.0.0/16');
    assert.equal(overlaps(a, parseSubnet('10.1.7.0/24')), true);
    assert.equal(overlaps(a, parseSubnet('10.2.0.0/24')), false);
  });
});

describe('the nftables table', () => {
  const t = { name: tableName('unum0'), bridge: 'unum0', subnet: '172.26.64.0/20' };
  it('is replaced in one transaction, with the ports of running allocations', () => {
    const text = tableRuleset(t, [{ ip: '172.26.64.2', ports: [8080, 9090] }]);
    assert.match(text, /^table ip unum_unum0 \{\}\ndelete table ip unum_unum0\ntable ip unum_unum0 \{/);
    assert.match(text, /elements = \{ 8080 : 172\.26\.64\.2, 9090 : 172\.26\.64\.2 \}/);
    // Tasks are refused the host; what they reach outside goes through NAT.
    assert.match(text, /iifname "unum0" meta l4proto tcp reject with tcp reset/);
    assert.match(text, /ip saddr 172\.26\.64\.0\/20 oifname != "unum0" masquerade/);
  });
  it('publishes and unpublishes ports element by element, TCP and UDP', () => {
    assert.equal(
      portsCommand(t, { ip: '172.26.64.3', ports: [20001] }, 'add'),
      'add element ip unum_unum0 tcp_ports { 20001 : 172.26.64.3 }\nadd element ip unum_unum0 udp_ports { 20001 : 172.26.64.3 }\n',
    );
    assert.equal(
      portsCommand(t, { ip: '172.26.64.3', ports: [20001] }, 'delete'),
      'delete element ip unum_unum0 tcp_ports { 20001 }\ndelete element ip unum_unum0 udp_ports { 20001 }\n',
    );
    assert.equal(portsCommand(t, { ip: '172.26.64.3', ports: [] }, 'add'), '');
  });
});

describe("the host's own ports", () => {
  it('are found by binding them, TCP and UDP, on any address', async () => {
    const tcp = createServer();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    const tcpPort = (tcp.address() as AddressInfo).port;
    const udp = createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const udpPort = udp.address().port;
    try {
      const inUse = await hostPortsInUse([tcpPort, udpPort]);
      assert.deepEqual(inUse.sort(), [tcpPort, udpPort].sort());
    } finally {
      tcp.close();
      udp.close();
    }
    assert.deepEqual(await hostPortsInUse([tcpPort]), []);
    assert.deepEqual(await hostPortsInUse([]), []);
  });
  it('are not those a connection of the host uses as its own end (they can be published)', async () => {
    const server = createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await new Promise((r) => client.once('connect', r));
    const clientPort = client.localPort!;
    try {
      assert.deepEqual(await hostPortsInUse([clientPort]), []);
    } finally {
      client.destroy();
      server.close();
    }
  });
  it('are read from the LISTEN and unconnected UDP entries of /proc/net', () => {
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue',
      '   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0',
      '   1: 0100007F:1F90 0100007F:D2C4 01 00000000:00000000 00:00000000 00000000     0',
    ].join('\n');
    assert.deepEqual([...listeningPorts(tcp, 'tcp')], [22]);
    const udp = ['  sl  local_address rem_address   st', '  5: 00000000:0035 00000000:0000 07 0'].join('\n');
    assert.deepEqual([...listeningPorts(udp, 'udp')], [53]);
  });
});
