/**
 * The error classes every layer uses. Each has a stable `code`; callers branch on the code or the
 * class, never on message text. The API edge maps codes to HTTP statuses (src/api/errors.ts) and the
 * client rebuilds the same classes from the wire.
 */
export type ErrorCode =
  | 'not_found'
  | 'conflict'
  | 'invalid'
  | 'forbidden'
  | 'unauthenticated'
  | 'unavailable'
  | 'compacted'
  | 'not_leader'
  | 'internal';

export interface FieldProblem {
  /** Path of the field, e.g. `groups[0].tasks[1].resources.memory`. Empty for the whole document. */
  path: string;
  message: string;
}

export interface ErrorDetails {
  fields?: FieldProblem[];
  [key: string]: unknown;
}

export class UnumError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails | undefined;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options?.details;
  }
}

export class NotFoundError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('not_found', message, options);
  }
}

/** A compare failed or a revision moved: retry after re-reading. */
export class ConflictError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('conflict', message, options);
  }
}

/** Bad input. `details.fields` names each offending field path. */
export class InvalidError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('invalid', message, options);
  }
  get fields(): FieldProblem[] {
    return this.details?.fields ?? [];
  }
  static fromFields(fields: FieldProblem[], what = 'invalid input'): InvalidError {
    const lines = fields.map((f) => (f.path === '' ? f.message : `${f.path}: ${f.message}`));
    return new InvalidError(`${what}:\n  ${lines.join('\n  ')}`, { details: { fields } });
  }
}

export class ForbiddenError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('forbidden', message, options);
  }
}

export class UnauthenticatedError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('unauthenticated', message, options);
  }
}

/** A dependency (store, server, agent) cannot be reached now; the same call may succeed later. */
export class UnavailableError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('unavailable', message, options);
  }
}

/** The requested revision was compacted away; `details.compactRevision` is the oldest still readable. */
export class CompactedError extends UnumError {
  constructor(message: string, compactRevision: number, options?: { cause?: unknown }) {
    super('compacted', message, { ...options, details: { compactRevision } });
  }
  get compactRevision(): number {
    return Number(this.details?.['compactRevision'] ?? 0);
  }
}

/**
 * A write of the leader's (a plan, a controller's change) was made in a leadership term that has
 * ended: it was refused, never sent without its fence. The new leader redoes the work.
 */
export class NotLeaderError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('not_leader', message, options);
  }
}

export class InternalError extends UnumError {
  constructor(message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super('internal', message, options);
  }
}

const byCode: Record<
  Exclude<ErrorCode, 'compacted'>,
  new (message: string, options?: { details?: ErrorDetails }) => UnumError
> = {
  not_found: NotFoundError,
  conflict: ConflictError,
  invalid: InvalidError,
  forbidden: ForbiddenError,
  unauthenticated: UnauthenticatedError,
  unavailable: UnavailableError,
  not_leader: NotLeaderError,
  internal: InternalError,
};

/** Rebuilds the right class from a wire `{ code, message, details }`. Unknown codes become InternalError. */
export function errorFromWire(code: string, message: string, details?: ErrorDetails): UnumError {
  // CompactedError itself, not a subclass: a subclass would carry another `name` and constructor.
  if (code === 'compacted') return new CompactedError(message, Number(details?.['compactRevision'] ?? 0));
  const Ctor =
    (byCode as Record<string, (typeof byCode)[keyof typeof byCode] | undefined>)[code] ?? InternalError;
  return details === undefined ? new Ctor(message) : new Ctor(message, { details });
}

export function isUnumError(err: unknown): err is UnumError {
  return err instanceof UnumError;
}
