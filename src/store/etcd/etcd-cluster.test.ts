/**
 * The Store contract on a real three-member etcd cluster, the store talking to all three members: a
 * fresh cluster per test (the contract counts revisions from an empty store), the next one started
 * while the current test runs.
 */
import { after } from 'node:test';
import { etcdPool } from '../../testing/etcd.ts';
import { runStoreContract } from '../contract.ts';
import { EtcdStore } from './etcd-store.ts';

const pool = etcdPool({ members: 3 });
after(() => pool.close());

runStoreContract('etcd (3 members)', async () => {
  const cluster = await pool.take();
  return new EtcdStore({ url: cluster.url });
});
