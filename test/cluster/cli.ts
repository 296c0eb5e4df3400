/**
 * `npm run cluster -- COMMAND`: test hosts by hand (./hosts.ts, ./cluster.ts).
 *
 *   up [N]         N hosts (default 3): a server on h1, an agent on each; stays in the foreground,
 *                  prints how to reach the cluster; Ctrl-C removes everything
 *   status         the hosts, their addresses and process counts
 *   kill HOST      kill every process of the host (a power cut)
 *   pause HOST     freeze it; resume HOST thaws it
 *   partition HOST drop its traffic; heal [HOST] ends it (every host without one)
 *   down           remove the running cluster
 *   sweep          remove what any interrupted test cluster left on this machine
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { TestHosts } from './hosts.ts';
import { UnumCluster } from './cluster.ts';

const STATE = '/run/unum-cluster.json';
const [command = 'help', arg] = process.argv.slice(2);

function attached(): TestHosts {
  if (!existsSync(STATE)) {
    console.error('no cluster is up: npm run cluster -- up 3');
    process.exit(1);
  }
  return TestHosts.attach(JSON.parse(readFileSync(STATE, 'utf8')) as Parameters<typeof TestHosts.attach>[0]);
}

function need(what: string): string {
  if (arg === undefined) {
    console.error(`usage: npm run cluster -- ${command} ${what}`);
    process.exit(2);
  }
  return arg;
}

switch (command) {
  case 'up': {
    if (process.getuid?.() !== 0) {
      console.error('test hosts need root (network namespaces, cgroups, mounts)');
      process.exit(1);
    }
    const count = Number(arg ?? 3);
    if (!Number.isInteger(count) || count < 1 || count > 20) {
      console.error(`expected 1 to 20 hosts, got ${arg}`);
      process.exit(2);
    }
    console.log(`starting ${count} hosts…`);
    const c = await UnumCluster.start({ hosts: count });
    writeFileSync(
      STATE,
      JSON.stringify({ ...c.hosts.state(), token: c.token, addr: c.addr, caFile: c.caFile }),
    );
    const stop = () => {
      console.log('\nremoving the cluster…');
      c.down();
      rmSync(STATE, { force: true });
      process.exit(0);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    console.log(`\n${count} hosts up (cluster ${c.hosts.id}):`);
    for (const h of c.hosts.hosts) console.log(`  ${h.name}  ${h.ip}`);
    console.log(`\n  export UNUM_ADDR=${c.addr} UNUM_CACERT=${c.caFile} UNUM_TOKEN=${c.token}\n`);
    console.log(
      `Join another machine: unum agent --join ${c.addr} --token ${c.joinToken} --ca-hash ${c.caHash}\n`,
    );
    console.log(
      'In another terminal: npm run cluster -- kill h2 | pause h2 | resume h2 | partition h3 | heal | status',
    );
    console.log('Ctrl-C removes everything.');
    setInterval(() => undefined, 1 << 30);
    break;
  }
  case 'status': {
    const t = attached();
    for (const h of t.hosts) console.log(`${h.name}  ${h.ip}  ${t.pids(h.name).length} processes`);
    break;
  }
  case 'kill':
    attached().kill(need('HOST'));
    break;
  case 'pause':
    attached().pause(need('HOST'));
    break;
  case 'resume':
    attached().resume(need('HOST'));
    break;
  case 'partition':
    attached().partition(need('HOST'));
    break;
  case 'heal':
    attached().heal(arg);
    break;
  case 'down':
    attached().down();
    rmSync(STATE, { force: true });
    break;
  case 'sweep':
    TestHosts.sweep();
    rmSync(STATE, { force: true });
    break;
  default:
    console.log(
      readFileSync(new URL(import.meta.url), 'utf8')
        .split('*/')[0]!
        .replace(/^\/\*\*\n/, '')
        .replace(/^ \* ?/gm, ''),
    );
}
