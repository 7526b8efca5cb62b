// Pieces shared by the pages: errors in words, paging, busy buttons.

import { listMembers } from './api.js';
import { ConsoleError, SessionEndedError, currentUser, startSignIn } from './auth.js';
import { h, notify, relativeText, time, untilMs } from './dom.js';

const DAY_MS = 86_400_000;
// Credentials expiring within this many days are flagged.
export const EXPIRY_WARNING_DAYS = 30;

/** Any failure as a sentence; never the raw JSON of an answer. */
export function errorText(error) {
  if (error instanceof ConsoleError) return error.message;
  // A bug in the console itself: say so, rather than pretend the server refused.
  return `Something went wrong in the console (${error?.message || error}). Reload and try again.`;
}

/** Show ``error`` in ``slot`` after ``what`` ("The name was not saved."). */
export function reportError(slot, what, error) {
  if (error instanceof SessionEndedError) {
    notify(slot, 'error', `${what} ${error.message}`, signInButton());
    return;
  }
  notify(slot, 'error', what ? `${what} ${errorText(error)}` : errorText(error));
}

export function signInButton(label = 'Sign in again') {
  const button = h('button', { type: 'button', class: 'btn btn-primary' }, label);
  button.addEventListener('click', () => {
    startSignIn(window.location.pathname + window.location.search).catch((error) => {
      button.replaceWith(h('p', {}, errorText(error)));
    });
  });
  return button;
}

// The workspace's members by subject (their email), as last loaded by ``loadPeople``.
const people = new Map();

/**
 * Load the members' emails, so that ``actor`` can name people; true when they were. A
 * failure (an older server, say) leaves the subjects shown as they are.
 */
export async function loadPeople() {
  try {
    const { data } = await listMembers();
    people.clear();
    for (const member of data) people.set(member.subject, member.email);
    return true;
  } catch (error) {
    if (error instanceof SessionEndedError) throw error;
    return false;
  }
}

/** The members' emails, for a datalist. */
export function memberEmails() {
  return [...people.values()];
}

/**
 * Who did something: "you" for the signed-in user, a member by their email, a CLI command
 * as "command line (…)"; the recorded subject in the tooltip.
 */
export function actor(subject) {
  if (!subject) return h('span', { class: 'muted' }, '\u2014');
  const email = people.get(subject);
  if (subject === currentUser()?.subject) {
    return h('span', { class: 'actor', title: email ? `${email} \u00b7 ${subject}` : subject }, 'you');
  }
  if (email) return h('span', { class: 'actor', title: subject }, email);
  if (subject.startsWith('cli:')) {
    return h('span', { class: 'actor', title: subject }, `command line (${subject.slice(4)})`);
  }
  return h('span', { class: 'subject', title: 'Not a member of this workspace (any more)' }, subject);
}

/** Run ``task`` with ``button`` disabled, so a double click sends one request. */
export async function busy(button, task) {
  if (button.disabled) return;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    await task();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

export function positiveInt(text, fallback) {
  const n = Number.parseInt(text ?? '', 10);
  return Number.isSafeInteger(n) && n >= 1 ? n : fallback;
}

/** "41–60 of 75 service accounts" with previous and next links keeping the other filters. */
export function pager(ctx, { page, limit, total }, [one, many]) {
  const pages = Math.max(1, Math.ceil(total / limit));
  const first = total === 0 ? 0 : Math.min(total, (page - 1) * limit + 1);
  const last = Math.min(total, page * limit);
  const link = (target, label, rel) => {
    const query = new URLSearchParams(ctx.query);
    if (target === 1) query.delete('page');
    else query.set('page', String(target));
    const search = query.toString();
    return h('a', { href: `${ctx.href(ctx.path)}${search ? `?${search}` : ''}`, class: 'btn btn-small', rel, 'data-route': '' }, label);
  };
  const summary = first > last
    ? `Page ${page} is past the end (${total} ${total === 1 ? one : many} in all).`
    : `${first}\u2013${last} of ${total} ${total === 1 ? one : many}`;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    page > 1 ? link(Math.min(page - 1, pages), '\u2190 Previous', 'prev') : null,
    h('span', { class: 'muted' }, summary),
    page < pages ? link(page + 1, 'Next \u2192', 'next') : null,
  );
}

/** A labelled form control, with its help text tied to it. */
export function field(label, control, help) {
  const helpId = help ? `${control.id}-help` : null;
  if (helpId) control.setAttribute('aria-describedby', helpId);
  return h('div', { class: 'field' },
    h('label', { for: control.id }, label),
    control,
    help ? h('p', { class: 'help', id: helpId }, help) : null);
}

/** True when a credential (secret, key, federated credential) has passed its expiry. */
export function isExpired(credential) {
  return untilMs(credential.expiresAt) <= 0;
}

/** The Expires cell of a credential: never, a date with "in 3 days" when near, or the date marked expired. */
export function expiryCell(credential) {
  if (!credential.expiresAt) return h('span', { class: 'muted' }, 'never');
  if (isExpired(credential)) return [time(credential.expiresAt), ' ', h('span', { class: 'badge badge-expired' }, 'expired')];
  const near = untilMs(credential.expiresAt) <= EXPIRY_WARNING_DAYS * DAY_MS;
  return [time(credential.expiresAt), near ? h('span', { class: 'muted small soon' }, ` (${relativeText(credential.expiresAt)})`) : null];
}

/** The local calendar day ``offset`` days from today, as a date input wants it. */
export function localDay(offset) {
  const day = new Date();
  day.setDate(day.getDate() + offset);
  const pad = (n) => String(n).padStart(2, '0');
  return `${day.getFullYear()}-${pad(day.getMonth() + 1)}-${pad(day.getDate())}`;
}

/** An "Expires on (optional)" date input for a new credential, and what it holds. */
export function expiryInput(id) {
  return h('input', { type: 'date', id, name: 'expiresAt', min: localDay(1) });
}

/**
 * The instant a date input names: the start of that day, your time, as ISO 8601; null when
 * empty; undefined when it is not a day after today.
 */
export function expiryValue(input) {
  if (!input.value) return null;
  // "YYYY-MM-DDT00:00" without a zone is read as local time: the start of that day here.
  const start = new Date(`${input.value}T00:00`);
  if (Number.isNaN(start.getTime()) || start.getTime() <= Date.now()) return undefined;
  return start.toISOString();
}
