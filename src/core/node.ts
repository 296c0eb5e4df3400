/**
 * What a node's scheduling state means, written once. The scheduler, the plan applier, the API
 * views and the CLI ask these instead of reading the fields themselves.
 */
import type { Node } from './types.ts';

/**
 * The scheduler may place new work on the node: it is eligible and not draining. (Whether it is
 * ready and alive is asked apart: that is the node's health, not the operator's choice.)
 */
export function isEligible(node: Pick<Node, 'eligibility' | 'drain'>): boolean {
  // A node stored before eligibility existed has none: it was eligible.
  return node.eligibility !== 'ineligible' && !node.drain;
}

/** Ready and eligible: the node's own say on taking new work (its agent's liveness is asked apart). */
export function takesNewWork(node: Pick<Node, 'status' | 'eligibility' | 'drain'>): boolean {
  return node.status === 'ready' && isEligible(node);
}

/** The eligibility column of `unum nodes`: `eligible`, `ineligible`, or `draining`. */
export function eligibilityOf(
  node: Pick<Node, 'eligibility' | 'drain'>,
): 'eligible' | 'ineligible' | 'draining' {
  if (node.drain) return 'draining';
  return isEligible(node) ? 'eligible' : 'ineligible';
}
