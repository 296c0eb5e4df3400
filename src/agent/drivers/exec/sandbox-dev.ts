/**
 * The /dev of unprivileged sandboxes, made once per machine and bound into each sandbox in one
 * mount (../../README.md, "Isolation"):
 *
 *   /run/unum/sandbox-dev/        tmpfs (private propagation), root 0755
 *     null zero full random urandom tty      device nodes, 0666 (as bwrap's --dev makes them)
 *     fd stdin stdout stderr core ptmx       symlinks
 *     pts/                                   a devpts instance of its own (newinstance, ptmx 0666)
 *     shm/                                   covered by each sandbox's private tmpfs
 *
 * bwrap's `--dev` builds the same for every sandbox with six bind mounts, each followed by a pass
 * over the mount table: about 1 ms of every start here, more on hosts with many mounts. One shared
 * tree costs one bind. What the tasks share: the devpts instance, whose pty slaves belong to the
 * uid that opened them (mode 0620), and the pty count that is global anyway (kernel.pty.max). An
 * unprivileged task can not change the tree (root-owned); a task running as root, or one given
 * devices (bwrap creates their mount points in /dev), gets bwrap's private `--dev` instead.
 *
 * The tree lives in /run: until reboot, shared by every agent of the machine, never in the way of
 * removing a data dir. It is made under a lock (`flock`), each step only when missing, so agents
 * starting together, or after a manual unmount, make it once and whole.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export const SANDBOX_DEV_DIR = '/run/unum/sandbox-dev';

const SETUP = `set -eu
d=$1
mkdir -p "$d"
mountpoint -q "$d" || { mount -t tmpfs -o mode=0755,size=64k,nosuid unum-sandbox-dev "$d"; mount --make-private "$d"; }
cd "$d"
for spec in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  name=\${spec%%:*}; rest=\${spec#*:}; major=\${rest%%:*}; minor=\${rest#*:}
  [ -c "$name" ] || { rm -f "$name"; mknod -m 0666 "$name" c "$major" "$minor"; chmod 0666 "$name"; }
done
for link in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2 core:/proc/kcore ptmx:pts/ptmx; do
  [ -L "\${link%%:*}" ] || ln -s "\${link#*:}" "\${link%%:*}"
done
mkdir -p pts shm
mountpoint -q pts || mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,nosuid,noexec unum-sandbox-pts pts
`;

/** Whether the tree at `dir` is complete (its devpts is mounted: gone after a manual unmount). */
export function sandboxDevReady(dir = SANDBOX_DEV_DIR): boolean {
  return existsSync(join(dir, 'pts', 'ptmx')) && existsSync(join(dir, 'null'));
}

/**
 * Makes the tree at `dir` (root only), or finds it made. Resolves to undefined when it is ready,
 * else to what went wrong (sandboxes then use bwrap's `--dev`, which works the same, slower).
 */
export async function ensureSandboxDev(
  dir = SANDBOX_DEV_DIR,
  path = '/usr/sbin:/usr/bin:/sbin:/bin',
): Promise<string | undefined> {
  try {
    await mkdir(dirname(dir), { recursive: true, mode: 0o755 });
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return new Promise((resolve) => {
    execFile(
      'flock',
      [`${dir}.lock`, 'sh', '-c', SETUP, 'sh', dir],
      { env: { PATH: path }, timeout: 10_000 },
      (err, _stdout, stderr) => {
        if (err !== null) {
          const last = stderr.trim().split('\n').pop()?.trim();
          return resolve(last || err.message);
        }
        resolve(sandboxDevReady(dir) ? undefined : `${dir} is incomplete after its set-up`);
      },
    );
  });
}
