/**
 * The default seccomp filter of a sandboxed task: a classic-BPF program, generated here (no
 * packaged seccomp compiler is dependable), that bubblewrap installs just before it execs the task
 * (`bwrap --seccomp FD`; bwrap has set no_new_privs, and the sandbox's init gets it too). Pure: an
 * architecture in, instructions and bytes out. ../../README.md, "Isolation", says why.
 *
 * What it decides, for every system call of the task and its children:
 *
 *   foreign ABI (i386 through `int 0x80` on x86_64, arm32 on aarch64)   kill the process (SIGSYS)
 *   x32 ABI numbers (x86_64 with bit 0x40000000)                       kill the process (SIGSYS)
 *   unshare, clone with CLONE_NEWUSER in their flags                   EPERM
 *   clone3                                                             ENOSYS (libc falls back to clone)
 *   setns, io_uring_*, keyctl, add_key, request_key, bpf,
 *   userfaultfd, perf_event_open                                       EPERM
 *   everything else                                                    allowed
 *
 * The program, for x86_64 (aarch64 has no x32 check and its own numbers):
 *
 *          ld   [4]                         ; seccomp_data.arch
 *          jeq  #AUDIT_ARCH_X86_64, 0, kill
 *          ld   [0]                         ; seccomp_data.nr
 *          jge  #0x40000000, x32, 0
 *          jeq  #unshare, flags, 0
 *          jeq  #clone, flags, 0
 *          jeq  #clone3, enosys, 0
 *          jeq  #setns, eperm, 0            ; … one jeq per denied call
 *          ret  #ALLOW
 *   flags: ld   [16]                        ; low 32 bits of args[0]
 *          jset #CLONE_NEWUSER, eperm, 0
 *          ret  #ALLOW
 *   x32:   jeq  #0xffffffff, enosys, kill   ; nr -1 (a tracer's "skip") gets the kernel's own answer
 *   eperm: ret  #ERRNO|EPERM
 *   enosys:ret  #ERRNO|ENOSYS
 *   kill:  ret  #KILL_PROCESS
 *
 * The path of every call that is allowed whatever its arguments uses only loads of `arch` and `nr`,
 * comparisons with constants and constant returns: the kernel (5.11+) then finds those calls
 * allowed once, when the filter is installed, and skips the program for them (its per-filter
 * "constant action" bitmap). Only unshare and clone run the program on each call.
 */

/** Architectures with a filter: those the agent runs on (Node's `process.arch` x64 and arm64). */
export type SeccompArch = 'x86_64' | 'aarch64';

/** `seccomp_data.arch` of each (AUDIT_ARCH_* in linux/audit.h: machine, 64-bit, little-endian). */
export const AUDIT_ARCH: Readonly<Record<SeccompArch, number>> = {
  x86_64: 0xc000003e,
  aarch64: 0xc00000b7,
};

/** On x86_64, the x32 ABI's calls arrive with the native arch and this bit set in their number. */
export const X32_SYSCALL_BIT = 0x40000000;

/** The flag that asks clone and unshare for a new user namespace (linux/sched.h). */
export const CLONE_NEWUSER = 0x10000000;

/** Actions (linux/seccomp.h). */
export const SECCOMP_RET = {
  /** Kills the whole process with SIGSYS (4.14+; older kernels read it as kill-the-thread). */
  killProcess: 0x80000000,
  /** The call fails with the errno in the low 16 bits, without running. */
  errno: 0x00050000,
  allow: 0x7fff0000,
} as const;

export const EPERM = 1;
export const ENOSYS = 38;

/** Offsets in `struct seccomp_data` { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; }. */
export const SECCOMP_DATA = {
  nr: 0,
  arch: 4,
  /** `args[i]`'s low 32 bits on a little-endian machine (both supported ones). */
  argLow: (i: number) => 16 + 8 * i,
} as const;

/** The system calls the filter names. */
export type FilteredSyscall =
  | 'unshare'
  | 'clone'
  | 'clone3'
  | 'setns'
  | 'io_uring_setup'
  | 'io_uring_enter'
  | 'io_uring_register'
  | 'keyctl'
  | 'add_key'
  | 'request_key'
  | 'bpf'
  | 'userfaultfd'
  | 'perf_event_open';

/**
 * Their numbers: x86_64 from arch/x86/entry/syscalls/syscall_64.tbl, aarch64 from the generic table
 * (include/uapi/asm-generic/unistd.h). The io_uring calls and clone3 came late enough to share
 * numbers everywhere.
 */
export const SYSCALL_NUMBERS: Readonly<Record<SeccompArch, Readonly<Record<FilteredSyscall, number>>>> = {
  x86_64: {
    unshare: 272,
    clone: 56,
    clone3: 435,
    setns: 308,
    io_uring_setup: 425,
    io_uring_enter: 426,
    io_uring_register: 427,
    keyctl: 250,
    add_key: 248,
    request_key: 249,
    bpf: 321,
    userfaultfd: 323,
    perf_event_open: 298,
  },
  aarch64: {
    unshare: 97,
    clone: 220,
    clone3: 435,
    setns: 268,
    io_uring_setup: 425,
    io_uring_enter: 426,
    io_uring_register: 427,
    keyctl: 219,
    add_key: 217,
    request_key: 218,
    bpf: 280,
    userfaultfd: 282,
    perf_event_open: 241,
  },
};

/**
 * Denied outright with EPERM, and why. Each is refused by Docker's default profile too, and none is
 * needed by shells, Python, Node (libuv uses io_uring only where io_uring_setup works, else its
 * thread pool), PostgreSQL (io_uring only when configured) or Redis.
 */
export const DENIED: readonly { syscall: FilteredSyscall; why: string }[] = [
  {
    syscall: 'setns',
    why: 'joining the namespaces of another process (its /proc/PID/ns files, a pidfd): it needs CAP_SYS_ADMIN, which no task has; refused before the kernel weighs it',
  },
  {
    syscall: 'io_uring_setup',
    why: 'io_uring: a large, fast-changing kernel interface behind many privilege escalations',
  },
  { syscall: 'io_uring_enter', why: 'io_uring (a ring made before the filter, passed in)' },
  { syscall: 'io_uring_register', why: 'io_uring (a ring made before the filter, passed in)' },
  { syscall: 'keyctl', why: 'the kernel keyrings are not namespaced: keys of other users of the host' },
  { syscall: 'add_key', why: 'the kernel keyrings are not namespaced' },
  { syscall: 'request_key', why: 'the kernel keyrings are not namespaced (and it can call upcalls)' },
  { syscall: 'bpf', why: 'loading programs into the kernel: the verifier is a frequent attack surface' },
  {
    syscall: 'userfaultfd',
    why: 'pausing the kernel on a page fault of its choosing: the tool that widens race windows in exploits',
  },
  {
    syscall: 'perf_event_open',
    why: "the host's performance counters: other tasks' activity, and a frequent attack surface",
  },
];

/** One instruction, as `struct sock_filter` { u16 code; u8 jt; u8 jf; u32 k; }. */
export interface SockFilter {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** Opcodes used (linux/bpf_common.h). */
export const BPF = {
  /** A = the 32-bit word at offset k of seccomp_data. */
  ldAbsW: 0x20,
  /** pc += (A == k) ? jt : jf. */
  jeqK: 0x15,
  /** pc += (A >= k) ? jt : jf (unsigned). */
  jgeK: 0x35,
  /** pc += (A & k) ? jt : jf. */
  jsetK: 0x45,
  /** return k. */
  retK: 0x06,
} as const;

/** The kernel refuses longer programs (BPF_MAXINSNS). */
export const BPF_MAXINSNS = 4096;

/** The architecture of a Node `process.arch`, when there is a filter for it. */
export function seccompArchOf(nodeArch: string = process.arch): SeccompArch | undefined {
  if (nodeArch === 'x64') return 'x86_64';
  if (nodeArch === 'arm64') return 'aarch64';
  return undefined;
}

type Label = 'kill' | 'flags' | 'x32' | 'eperm' | 'enosys';
/** An instruction whose jump targets may be labels (resolved to offsets by `assemble`). */
type Line = { label: Label } | { code: number; k: number; jt?: Label; jf?: Label };

/** The task filter for `arch`, as instructions. */
export function taskFilter(arch: SeccompArch): SockFilter[] {
  const nr = SYSCALL_NUMBERS[arch];
  const lines: Line[] = [
    { code: BPF.ldAbsW, k: SECCOMP_DATA.arch },
    { code: BPF.jeqK, k: AUDIT_ARCH[arch], jf: 'kill' },
    { code: BPF.ldAbsW, k: SECCOMP_DATA.nr },
  ];
  // x32 calls would get past every number below: x32 has numbers of its own, all with this bit.
  if (arch === 'x86_64') lines.push({ code: BPF.jgeK, k: X32_SYSCALL_BIT, jt: 'x32' });
  lines.push(
    { code: BPF.jeqK, k: nr.unshare, jt: 'flags' },
    { code: BPF.jeqK, k: nr.clone, jt: 'flags' },
    // clone3 takes its flags in a struct in memory, which a filter can not read: it is refused as
    // missing, and glibc (2.34+) then makes its threads and processes with clone, which is checked.
    { code: BPF.jeqK, k: nr.clone3, jt: 'enosys' },
    ...DENIED.map((d): Line => ({ code: BPF.jeqK, k: nr[d.syscall], jt: 'eperm' })),
    { code: BPF.retK, k: SECCOMP_RET.allow },
    { label: 'flags' },
    // The flags are args[0] of both calls on x86_64 and aarch64 (aarch64's clone has the
    // "backwards" order too: flags, stack, parent tid, tls, child tid). The kernel reads only
    // their low 32 bits (clone: lower_32_bits(); unshare's flags all fit there), where
    // CLONE_NEWUSER is: the high word, whatever a task puts in it, does not matter.
    { code: BPF.ldAbsW, k: SECCOMP_DATA.argLow(0) },
    { code: BPF.jsetK, k: CLONE_NEWUSER, jt: 'eperm' },
    { code: BPF.retK, k: SECCOMP_RET.allow },
  );
  if (arch === 'x86_64')
    lines.push({ label: 'x32' }, { code: BPF.jeqK, k: 0xffffffff, jt: 'enosys', jf: 'kill' });
  lines.push(
    { label: 'eperm' },
    { code: BPF.retK, k: SECCOMP_RET.errno | EPERM },
    { label: 'enosys' },
    { code: BPF.retK, k: SECCOMP_RET.errno | ENOSYS },
    // A foreign ABI has other numbers for the same calls (i386's unshare is 310): rather than a
    // second table per ABI, it is not allowed at all. Killing beats failing every call: a program
    // whose exit fails too would spin; this one ends, "killed by SIGSYS".
    { label: 'kill' },
    { code: BPF.retK, k: SECCOMP_RET.killProcess },
  );
  return assemble(lines);
}

/** Resolves labels to forward offsets (classic BPF jumps only forward, by at most 255). */
function assemble(lines: readonly Line[]): SockFilter[] {
  const at = new Map<Label, number>();
  let n = 0;
  for (const line of lines) {
    if ('label' in line) at.set(line.label, n);
    else n++;
  }
  const out: SockFilter[] = [];
  for (const line of lines) {
    if ('label' in line) continue;
    const pc = out.length;
    const offset = (label: Label | undefined): number => {
      if (label === undefined) return 0;
      const target = at.get(label);
      if (target === undefined) throw new Error(`seccomp: no label ${label}`);
      const d = target - pc - 1;
      if (d < 0 || d > 255) throw new Error(`seccomp: jump to ${label} out of reach (${d})`);
      return d;
    };
    out.push({ code: line.code, jt: offset(line.jt), jf: offset(line.jf), k: line.k >>> 0 });
  }
  if (out.length > BPF_MAXINSNS) throw new Error(`seccomp: ${out.length} instructions`);
  return out;
}

/**
 * The program as bwrap reads it: an array of `struct sock_filter`, 8 bytes each, in the machine's
 * byte order (little-endian on both supported architectures).
 */
export function encodeFilter(program: readonly SockFilter[]): Buffer {
  const buf = Buffer.alloc(program.length * 8);
  program.forEach((insn, i) => {
    buf.writeUInt16LE(insn.code, i * 8);
    buf.writeUInt8(insn.jt, i * 8 + 2);
    buf.writeUInt8(insn.jf, i * 8 + 3);
    buf.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
  });
  return buf;
}

/** The instructions of an encoded program (tests, and a look at what an agent installs). */
export function decodeFilter(buf: Buffer): SockFilter[] {
  if (buf.length % 8 !== 0) throw new Error(`seccomp: ${buf.length} bytes is not a whole program`);
  const out: SockFilter[] = [];
  for (let o = 0; o < buf.length; o += 8)
    out.push({
      code: buf.readUInt16LE(o),
      jt: buf.readUInt8(o + 2),
      jf: buf.readUInt8(o + 3),
      k: buf.readUInt32LE(o + 4),
    });
  return out;
}

/** The encoded task filter of this machine's architecture, or undefined where there is none. */
export function taskFilterBytes(nodeArch: string = process.arch): Buffer | undefined {
  const arch = seccompArchOf(nodeArch);
  return arch === undefined ? undefined : encodeFilter(taskFilter(arch));
}
