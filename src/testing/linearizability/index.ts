/** A linearizability checker for histories of register operations (see README.md). */
export {
  Recorder,
  formatOperation,
  parseJsonLines,
  toJsonLines,
  type CasInput,
  type Completion,
  type Operation,
  type OperationKind,
  type Process,
  type RecorderOptions,
  type Value,
} from './history.ts';
export { register, type Model } from './register.ts';
export { searchKey, type SearchResult, type Verdict } from './wgl.ts';
export { explainViolation, type Explanation, type ViolationKind } from './explain.ts';
export { checkHistory, defaultMaxStepsPerKey, type CheckOptions, type CheckResult } from './checker.ts';
