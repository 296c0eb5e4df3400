/**
 * Reads a job file into the raw document the API takes. The server validates the document (one
 * schema, field paths in its errors); here we only decode YAML or JSON and point at syntax errors as
 * `FILE:LINE:COL: message`, which editors and terminals turn into links.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { LineCounter, parseAllDocuments, parseDocument } from 'yaml';

/** The file cannot be read or decoded. The message is ready to print (it starts with the file name). */
export class JobFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobFileError';
  }
}

export type JobFileFormat = 'yaml' | 'json';

/** What a file holds, as its errors name it. */
export interface DocumentKind {
  noun: string;
  /** What the document looks like, for "expected a job (…)". */
  shape: string;
}

export const JOB_DOCUMENT: DocumentKind = { noun: 'job', shape: 'a mapping with "job", "groups", ...' };

/** yaml/yml or json from the file name; `-` (stdin) is read as YAML, which also accepts JSON. */
export function jobFileFormat(file: string, kind: DocumentKind = JOB_DOCUMENT): JobFileFormat {
  if (file === '-') return 'yaml';
  const ext = extname(file).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  if (ext === '.json') return 'json';
  throw new JobFileError(
    `${file}: unknown ${kind.noun} file type "${ext || '(no extension)'}": use .yaml, .yml or .json`,
  );
}

/** Reads and decodes a job file, or another document of `kind` (`-` reads stdin). */
export async function readJobFile(
  file: string,
  stdin: () => Promise<string> = readStdin,
  kind: DocumentKind = JOB_DOCUMENT,
): Promise<unknown> {
  const format = jobFileFormat(file, kind);
  let text: string;
  try {
    text = file === '-' ? await stdin() : await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') throw new JobFileError(`${file}: no such file`);
    if (code === 'EISDIR') throw new JobFileError(`${file}: is a directory, not a ${kind.noun} file`);
    throw new JobFileError(`${file}: cannot read: ${(err as Error).message}`);
  }
  return parseJobText(text, file === '-' ? '<stdin>' : file, format, kind);
}

/** Decodes job file text; `name` prefixes error positions. */
export function parseJobText(
  text: string,
  name: string,
  format: JobFileFormat,
  kind: DocumentKind = JOB_DOCUMENT,
): unknown {
  if (text.trim() === '')
    throw new JobFileError(`${name}: the file is empty; expected a ${kind.noun} document`);
  const doc = format === 'json' ? parseJson(text, name) : parseYaml(text, name, kind);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new JobFileError(
      `${name}: expected a ${kind.noun} (${kind.shape}), got ${Array.isArray(doc) ? 'a list' : JSON.stringify(doc)}`,
    );
  return doc;
}

function parseYaml(text: string, name: string, kind: DocumentKind): unknown {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  if (!Array.isArray(docs)) return null; // an empty stream; caught above by the emptiness check
  const first = docs[0];
  if (!first) throw new JobFileError(`${name}: the file holds no document; expected a ${kind.noun}`);
  for (const d of docs) {
    const err = d.errors[0];
    if (err) {
      const { line, col } = lineCounter.linePos(err.pos[0]);
      throw new JobFileError(`${name}:${line}:${col}: ${firstLine(err.message)}`);
    }
  }
  if (docs.length > 1) {
    const { line, col } = lineCounter.linePos(docs[1]?.range[0] ?? 0);
    throw new JobFileError(`${name}:${line}:${col}: one ${kind.noun} per file: found a second document`);
  }
  return first.toJS({ maxAliasCount: 100 }) as unknown;
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const message = (err as Error).message;
    // V8 says "... in JSON at position 11 (line 3 column 1)" for most errors, but not all.
    const at = /^(.*?) in JSON at position (\d+)(?: \(line (\d+) column (\d+)\))?/s.exec(message);
    if (at) {
      const pos = Number(at[2]);
      const { line, col } =
        at[3] !== undefined ? { line: Number(at[3]), col: Number(at[4]) } : lineCol(text, pos);
      throw new JobFileError(`${name}:${line}:${col}: ${lowerFirst(at[1] ?? message)}`);
    }
    // JSON is YAML: ask the YAML parser (with the JSON schema, so `tru` is no string) where it broke,
    // and keep JSON's own words for what.
    const lineCounter = new LineCounter();
    const yamlErr = parseDocument(text, { schema: 'json', lineCounter, prettyErrors: false }).errors[0];
    const { line, col } = yamlErr
      ? lineCounter.linePos(yamlErr.pos[0])
      : lineCol(text, text.trimEnd().length);
    throw new JobFileError(`${name}:${line}:${col}: ${lowerFirst(shortJsonMessage(message))}`);
  }
}

/** 1-based line and column of a character offset. */
export function lineCol(text: string, pos: number): { line: number; col: number } {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  return { line, col: pos - before.lastIndexOf('\n') };
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** `Unexpected token 'x', "{...whole text...}" is not valid JSON` → `Unexpected token "x"`. */
function shortJsonMessage(m: string): string {
  const token = /^Unexpected token '(.*?)', ".*" is not valid JSON$/s.exec(m);
  if (token) return `Unexpected token ${JSON.stringify(token[1])}`;
  return firstLine(m);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
