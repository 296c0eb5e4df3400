/**
 * The history of operations that clients made against a key-value store of registers, as recorded
 * while the system was being disturbed, and its JSON-lines form.
 *
 * Each operation is an invocation and, when the client learnt it, an outcome. The three outcomes a
 * client can report are not symmetric:
 * - `ok(output)`: it took effect exactly once, somewhere between its invocation and its completion.
 *   A cas whose compare failed is `ok(false)`: it did happen, as a read of a different value.
 * - `fail()`: it certainly did not take effect (a refusal before anything was applied: a 4xx for
 *   invalid input or missing permission). It constrains nothing and is left out of the history.
 * - `unknown()`: timed out, connection lost, the server crashed while answering. It may have taken
 *   effect, once, at any time after its invocation (even long after the client gave up), or never.
 */

/** A register's value. `null` is the initial value of every key (a key never written). */
export type Value = string | number | boolean | null;

/** Who made the operation: one client, making one operation at a time. */
export type Process = string | number;

export interface CasInput {
  expect: Value;
  value: Value;
}

interface Common {
  process: Process;
  key: string;
  /** When the client sent it, on a clock shared by every client of the history. */
  invoke: number;
  /** When the client learnt the outcome, same clock; `undefined` when the outcome is unknown. */
  complete: number | undefined;
}

export interface ReadOperation extends Common {
  op: 'read';
  /** The value read; absent when the outcome is unknown. */
  output?: Value;
}

export interface WriteOperation extends Common {
  op: 'write';
  input: Value;
}

export interface CasOperation extends Common {
  op: 'cas';
  input: CasInput;
  /** Whether the compare matched and the value was set; absent when the outcome is unknown. */
  output?: boolean;
}

export type Operation = ReadOperation | WriteOperation | CasOperation;
export type OperationKind = Operation['op'];

/** What a client calls once it knows (or knows it does not know) how its operation ended. */
export interface Completion<Output> {
  /** It took effect; for a read the value read (`undefined` is taken as `null`), for a cas whether it set. */
  ok(output: Output): void;
  /** It certainly did not take effect. A cas whose compare failed is `ok(false)`, not this. */
  fail(): void;
  /** It may or may not have taken effect, at any time after its invocation. */
  unknown(): void;
}

export interface RecorderOptions {
  /**
   * The clock of `invoke` and `complete`. The default is a counter, which is exact for clients in one
   * process: each call of `invoke` or of a completion happens after the previous one.
   */
  clock?: () => number;
}

/**
 * Records a history as clients make operations. A client records each operation's invocation just
 * before sending it and its completion as soon as it has the answer: the recorded interval must
 * contain the real one, or the check may report violations that did not happen.
 */
export class Recorder {
  readonly #clock: () => number;
  readonly #operations: (Operation | undefined)[] = [];
  #failed = 0;

  constructor(options: RecorderOptions = {}) {
    let tick = 0;
    this.#clock = options.clock ?? (() => ++tick);
  }

  invoke(process: Process, key: string, op: 'read'): Completion<Value | undefined>;
  invoke(process: Process, key: string, op: 'write', input: Value): Completion<void>;
  invoke(process: Process, key: string, op: 'cas', input: CasInput): Completion<boolean>;
  invoke(
    process: Process,
    key: string,
    op: OperationKind,
    input?: Value | CasInput,
  ): Completion<Value | undefined> | Completion<void> | Completion<boolean> {
    const invoke = this.#clock();
    const base = { process, key, invoke, complete: undefined };
    let operation: Operation;
    if (op === 'read') operation = { ...base, op };
    else if (op === 'write') operation = { ...base, op, input: checkValue(input, 'input') };
    else operation = { ...base, op, input: checkCasInput(input, 'input') };
    const index = this.#operations.push(operation) - 1;
    let settled = false;
    const settle = (how: string) => {
      if (settled) throw new Error(`${op} of ${key} by ${process}: completed twice (then ${how})`);
      settled = true;
    };
    return {
      ok: (output?: Value | boolean) => {
        settle('ok');
        operation.complete = this.#clock();
        if (operation.op === 'read') operation.output = checkValue(output ?? null, 'output');
        else if (operation.op === 'cas') {
          if (typeof output !== 'boolean') throw new Error(`cas of ${key}: ok() needs a boolean`);
          operation.output = output;
        }
      },
      fail: () => {
        settle('fail');
        this.#operations[index] = undefined;
        this.#failed++;
      },
      unknown: () => settle('unknown'),
    };
  }

  /** The operations so far, in invocation order; those still awaiting an outcome count as unknown. */
  history(): Operation[] {
    return this.#operations.filter((o) => o !== undefined).map((o) => ({ ...o }));
  }

  /** How many operations were refused (`fail()`) and so left out of the history. */
  get failed(): number {
    return this.#failed;
  }
}

/** One operation per line, as JSON; an unknown outcome has `"complete": null` and no output. */
export function toJsonLines(history: readonly Operation[]): string {
  return history.map((o) => JSON.stringify({ ...o, complete: o.complete ?? null }) + '\n').join('');
}

/** Parses `toJsonLines` output, naming the line and the field of the first thing wrong. */
export function parseJsonLines(text: string): Operation[] {
  const history: Operation[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `line ${i + 1}`;
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (err) {
      throw new Error(`${where}: not JSON (${(err as Error).message})`, { cause: err });
    }
    history.push(parseOperation(raw, where));
  });
  return history;
}

function parseOperation(raw: unknown, where: string): Operation {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error(`${where}: expected an object, got ${JSON.stringify(raw)}`);
  }
  const r = raw as Record<string, unknown>;
  const process = r.process;
  if (typeof process !== 'string' && typeof process !== 'number') {
    throw new Error(`${where}: process: expected a string or a number, got ${JSON.stringify(process)}`);
  }
  if (typeof r.key !== 'string')
    throw new Error(`${where}: key: expected a string, got ${JSON.stringify(r.key)}`);
  const invoke = r.invoke;
  if (typeof invoke !== 'number' || !Number.isFinite(invoke)) {
    throw new Error(`${where}: invoke: expected a number, got ${JSON.stringify(invoke)}`);
  }
  const complete = r.complete ?? undefined;
  if (complete !== undefined && (typeof complete !== 'number' || complete < invoke)) {
    throw new Error(
      `${where}: complete: expected null (unknown outcome) or a number ≥ invoke (${invoke}), got ${JSON.stringify(complete)}`,
    );
  }
  const base = { process, key: r.key, invoke, complete };
  const known = complete !== undefined;
  switch (r.op) {
    case 'read':
      return known
        ? { ...base, op: 'read', output: checkValue(r.output, `${where}: output`) }
        : { ...base, op: 'read' };
    case 'write':
      return { ...base, op: 'write', input: checkValue(r.input, `${where}: input`) };
    case 'cas': {
      const input = checkCasInput(r.input, `${where}: input`);
      if (!known) return { ...base, op: 'cas', input };
      if (typeof r.output !== 'boolean') {
        throw new Error(
          `${where}: output: expected true or false for a cas, got ${JSON.stringify(r.output)}`,
        );
      }
      return { ...base, op: 'cas', input, output: r.output };
    }
    default:
      throw new Error(`${where}: op: expected "read", "write" or "cas", got ${JSON.stringify(r.op)}`);
  }
}

function checkValue(value: unknown, what: string): Value {
  if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) return value as Value;
  throw new Error(`${what}: expected a string, number, boolean or null, got ${JSON.stringify(value)}`);
}

function checkCasInput(input: unknown, what: string): CasInput {
  if (typeof input !== 'object' || input === null || !('expect' in input) || !('value' in input)) {
    throw new Error(`${what}: expected { expect, value } for a cas, got ${JSON.stringify(input)}`);
  }
  return {
    expect: checkValue(input.expect, `${what}.expect`),
    value: checkValue(input.value, `${what}.value`),
  };
}

/** `[  10 ..   14] client 3  read → 7` — one operation, for explanations. */
export function formatOperation(o: Operation): string {
  const span = `[${String(o.invoke).padStart(8)} .. ${o.complete === undefined ? '       ?' : String(o.complete).padStart(8)}]`;
  const who = `client ${o.process}`;
  const outcome = o.complete === undefined ? ' (outcome unknown)' : '';
  switch (o.op) {
    case 'read':
      return `${span} ${who}  read → ${o.complete === undefined ? '?' : JSON.stringify(o.output)}${outcome}`;
    case 'write':
      return `${span} ${who}  write ${JSON.stringify(o.input)}${outcome}`;
    case 'cas': {
      const result = o.complete === undefined ? '?' : o.output ? 'ok' : 'failed';
      return `${span} ${who}  cas ${JSON.stringify(o.input.expect)} → ${JSON.stringify(o.input.value)}: ${result}${outcome}`;
    }
  }
}
