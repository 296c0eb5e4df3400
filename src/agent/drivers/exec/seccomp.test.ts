/**
 * The task filter's program, read back and run by a small classic-BPF interpreter on sample
 * `seccomp_data`; then the agent's detection, with real bwrap, of a kernel that takes or refuses it.
 * What the filter does to a real task is test/hostile/seccomp.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { missingRoot, missingTools } from '../../../testing/tools.ts';
import { BWRAP_FDS } from '../launch.ts';
import { detectIsolation } from './isolation.ts';
import { bwrapArgs } from './sandbox.ts';
import {
  AUDIT_ARCH,
  BPF,
  BPF_MAXINSNS,
  CLONE_NEWUSER,
  DENIED,
  SYSCALL_NUMBERS,
  decodeFilter,
  encodeFilter,
  seccompArchOf,
  taskFilter,
  taskFilterBytes,
  type SeccompArch,
  type SockFilter,
} from './seccomp.ts';

const AUDIT_ARCH_I386 = 0x40000003;
const AUDIT_ARCH_ARM = 0x40000028;
const CLONE_NEWNS = 0x00020000;
const CLONE_VM = 0x00000100;
const CLONE_THREAD = 0x00010000;
const SIGCHLD = 17;

interface Data {
  nr: number;
  arch: number;
  args?: readonly bigint[];
}

/**
 * Runs a seccomp program as the kernel would (the instructions it uses), on one call. Returns the
 * action and the offsets of `seccomp_data` the program read.
 */
function interpret(program: readonly SockFilter[], data: Data): { ret: number; loads: number[] } {
  const mem = Buffer.alloc(64);
  mem.writeInt32LE(data.nr | 0, 0);
  mem.writeUInt32LE(data.arch, 4);
  (data.args ?? []).forEach((a, i) => mem.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i));
  const loads: number[] = [];
  let a = 0;
  for (let pc = 0; pc < program.length;) {
    const insn = program[pc]!;
    switch (insn.code) {
      case BPF.ldAbsW:
        assert.ok(insn.k % 4 === 0 && insn.k + 4 <= 64, `load at ${insn.k}`);
        loads.push(insn.k);
        a = mem.readUInt32LE(insn.k);
        pc += 1;
        break;
      case BPF.jeqK:
        pc += 1 + (a === insn.k ? insn.jt : insn.jf);
        break;
      case BPF.jgeK:
        pc += 1 + (a >= insn.k ? insn.jt : insn.jf);
        break;
      case BPF.jsetK:
        pc += 1 + ((a & insn.k) !== 0 ? insn.jt : insn.jf);
        break;
      case BPF.retK:
        return { ret: insn.k, loads };
      default:
        throw new Error(`unknown instruction 0x${insn.code.toString(16)} at ${pc}`);
    }
  }
  throw new Error('ran off the end of the program');
}

type Decision = 'allow' | 'EPERM' | 'ENOSYS' | 'kill';

function decide(program: readonly SockFilter[], data: Data): Decision {
  const { ret } = interpret(program, data);
  if (ret === 0x7fff0000) return 'allow';
  if (ret === 0x00050001) return 'EPERM';
  if (ret === 0x00050026) return 'ENOSYS';
  if (ret === 0x80000000) return 'kill';
  throw new Error(`unexpected action 0x${ret.toString(16)}`);
}

const ARCHES: readonly SeccompArch[] = ['x86_64', 'aarch64'];

void describe('the task seccomp filter', () => {
  void test('one program per architecture, short, 8 bytes an instruction, read back as written', () => {
    assert.equal(taskFilter('x86_64').length, 25);
    assert.equal(taskFilter('aarch64').length, 23);
    for (const arch of ARCHES) {
      const program = taskFilter(arch);
      assert.ok(program.length <= BPF_MAXINSNS);
      const bytes = encodeFilter(program);
      assert.equal(bytes.length, program.length * 8);
      assert.deepEqual(decodeFilter(bytes), program);
    }
    // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }, little-endian: `ld [4]` (the arch) first.
    assert.deepEqual(
      [...encodeFilter(taskFilter('x86_64')).subarray(0, 16)],
      [0x20, 0, 0, 0, 4, 0, 0, 0, 0x15, 0, 0, 22, 0x3e, 0, 0, 0xc0],
    );
    assert.equal(seccompArchOf('x64'), 'x86_64');
    assert.equal(seccompArchOf('arm64'), 'aarch64');
    assert.equal(seccompArchOf('riscv64'), undefined);
    assert.equal(taskFilterBytes('ia32'), undefined);
  });

  void test('the architecture is checked first; a foreign ABI is killed', () => {
    for (const arch of ARCHES) {
      const program = taskFilter(arch);
      assert.deepEqual(program[0], { code: BPF.ldAbsW, jt: 0, jf: 0, k: 4 });
      assert.equal(program[1]?.code, BPF.jeqK);
      assert.equal(program[1]?.k, AUDIT_ARCH[arch]);
      const foreign = [
        AUDIT_ARCH_I386,
        AUDIT_ARCH_ARM,
        arch === 'x86_64' ? AUDIT_ARCH.aarch64 : AUDIT_ARCH.x86_64,
      ];
      // read (0 on x86_64), and unshare with CLONE_NEWUSER under i386's number (310): all killed.
      for (const a of foreign)
        for (const nr of [0, 63, 310])
          assert.equal(decide(program, { nr, arch: a, args: [BigInt(CLONE_NEWUSER)] }), 'kill');
    }
  });

  void test('x32 system calls on x86_64 are killed; nr -1 gets ENOSYS as from the kernel', () => {
    const program = taskFilter('x86_64');
    const arch = AUDIT_ARCH.x86_64;
    // x32's read, and its unshare (272) with CLONE_NEWUSER, which would slip past the native numbers.
    assert.equal(decide(program, { nr: 0x40000000, arch }), 'kill');
    assert.equal(decide(program, { nr: 0x40000000 | 272, arch, args: [BigInt(CLONE_NEWUSER)] }), 'kill');
    assert.equal(decide(program, { nr: -1, arch }), 'ENOSYS');
  });

  void test('decisions for sample calls, on both architectures', () => {
    for (const arch of ARCHES) {
      const program = taskFilter(arch);
      const nr = SYSCALL_NUMBERS[arch];
      const call = (n: number, ...args: number[]) =>
        decide(program, { nr: n, arch: AUDIT_ARCH[arch], args: args.map(BigInt) });
      assert.equal(call(nr.unshare, CLONE_NEWUSER), 'EPERM', `${arch} unshare(CLONE_NEWUSER)`);
      assert.equal(call(nr.unshare, CLONE_NEWUSER | CLONE_NEWNS), 'EPERM', `${arch} unshare -Urm`);
      assert.equal(call(nr.unshare, CLONE_NEWNS), 'allow', `${arch} unshare(CLONE_NEWNS)`);
      assert.equal(call(nr.unshare, 0), 'allow', `${arch} unshare(0) (the uid drop of unshare -S/-G)`);
      assert.equal(call(nr.clone, CLONE_NEWUSER | SIGCHLD), 'EPERM', `${arch} clone(CLONE_NEWUSER)`);
      assert.equal(call(nr.clone, SIGCHLD), 'allow', `${arch} clone as fork`);
      assert.equal(call(nr.clone, CLONE_VM | CLONE_THREAD | 0x3d0f00), 'allow', `${arch} a thread`);
      assert.equal(call(nr.clone3, 0, 88), 'ENOSYS', `${arch} clone3`);
      for (const d of DENIED) assert.equal(call(nr[d.syscall]), 'EPERM', `${arch} ${d.syscall}`);
      assert.equal(call(nr.io_uring_setup, 1, 0), 'EPERM', `${arch} io_uring_setup`);
      const read = arch === 'x86_64' ? 0 : 63;
      assert.equal(call(read, 0, 0, 10), 'allow', `${arch} read`);
      // Only the low 32 bits of the flags count (the kernel reads no more): bits above do not hide
      // CLONE_NEWUSER, nor stand in for it.
      const high = (flags: number) => (1n << 32n) | BigInt(flags);
      assert.equal(
        decide(program, { nr: nr.unshare, arch: AUDIT_ARCH[arch], args: [high(CLONE_NEWUSER)] }),
        'EPERM',
      );
      assert.equal(
        decide(program, { nr: nr.clone, arch: AUDIT_ARCH[arch], args: [BigInt(CLONE_NEWUSER) << 32n] }),
        'allow',
      );
    }
  });

  void test('only unshare and clone read their arguments: the kernel caches every other answer', () => {
    for (const arch of ARCHES) {
      const program = taskFilter(arch);
      const nr = SYSCALL_NUMBERS[arch];
      for (let n = 0; n < 512; n++) {
        const { loads } = interpret(program, {
          nr: n,
          arch: AUDIT_ARCH[arch],
          args: [BigInt(CLONE_NEWUSER)],
        });
        const readsArgs = loads.some((offset) => offset >= 8);
        assert.equal(readsArgs, n === nr.unshare || n === nr.clone, `${arch} nr ${n}`);
      }
    }
  });

  // The numbers, against this machine's kernel headers where they are installed (linux-libc-dev).
  const headers = {
    x86_64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h',
    aarch64: '/usr/include/asm-generic/unistd.h',
  } as const;
  for (const arch of ARCHES) {
    const header = headers[arch];
    void test(
      `${arch} system call numbers match ${header}`,
      { skip: existsSync(header) ? false : `${header} is not installed: apt-get install linux-libc-dev` },
      () => {
        const text = readFileSync(header, 'utf8');
        for (const [name, n] of Object.entries(SYSCALL_NUMBERS[arch])) {
          const m = new RegExp(`#define __NR(?:3264)?_${name}\\s+(\\d+)`).exec(text);
          assert.equal(Number(m?.[1]), n, `${arch} ${name}`);
        }
      },
    );
  }
});

void test('bwrap reads the filter from a descriptor of its own, and only when given one', () => {
  const spec = {
    hide: [],
    taskDir: '/data/allocs/a/t',
    maskedProc: { files: [], dirs: [] },
    hostname: 't',
    tmpfsBytes: 1 << 20,
    statusFd: BWRAP_FDS.status,
    command: 'true',
    args: [],
  };
  const args = bwrapArgs({ ...spec, seccompFd: BWRAP_FDS.seccomp });
  const at = args.indexOf('--seccomp');
  assert.equal(args[at + 1], '6');
  assert.ok(at < args.indexOf('--'), 'a bwrap option, before the command');
  assert.ok(!Object.values(BWRAP_FDS).some((fd, i, all) => all.indexOf(fd) !== i), 'descriptors distinct');
  assert.equal(bwrapArgs(spec).indexOf('--seccomp'), -1);
});

void describe('the filter on this node', () => {
  const skip = missingRoot('the sandbox probe') ?? missingTools(['bwrap', 'setpriv']) ?? false;

  void test('the kernel takes it: the sandbox gets it, nothing to warn about', { skip }, async () => {
    const cap = await detectIsolation({ favorDynmods: false });
    assert.ok(cap.namespaces, cap.warnings.join('; '));
    if (seccompArchOf() === undefined) return;
    assert.ok(cap.seccomp !== undefined, cap.warnings.join('; '));
    assert.deepEqual(
      cap.warnings.filter((w) => /seccomp/.test(w)),
      [],
    );
  });

  void test(
    'a filter the kernel refuses is said at start-up; sandboxes go on without it',
    { skip },
    async () => {
      // A jump past the end: the kernel's check refuses it (EINVAL).
      const refused = encodeFilter([{ code: BPF.jeqK, jt: 5, jf: 0, k: 0 }]);
      const cap = await detectIsolation({ favorDynmods: false, seccompProgram: refused });
      assert.ok(cap.namespaces, 'the sandbox itself still works');
      assert.equal(cap.seccomp, undefined);
      const said = cap.warnings.find((w) => /kernel refused the seccomp filter/.test(w));
      assert.ok(said !== undefined, cap.warnings.join('; '));
      assert.match(said, /can create user namespaces .* io_uring/);
    },
  );

  void test('an architecture without a filter is said at start-up', { skip }, async () => {
    const cap = await detectIsolation({ favorDynmods: false, arch: 'riscv64' });
    assert.equal(cap.seccomp, undefined);
    assert.ok(cap.warnings.some((w) => /no seccomp filter for this architecture \(riscv64/.test(w)));
  });
});
