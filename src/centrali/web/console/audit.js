// The workspace's audit log: who did what to which service account, newest first.

import { ApiError, listAccountsAfter, listAuditEvents } from './api.js';
import { h, time } from './dom.js';
import { actor, loadPeople, memberEmails, pager, positiveInt } from './views.js';

const PAGE_SIZE = 50;
// Account names are looked up a page of 100 at a time, this many pages at most.
const NAME_PAGES = 10;

export const ACTIONS = {
  'service_account.created': 'Created',
  'service_account.renamed': 'Renamed',
  'service_account.described': 'Description changed',
  'service_account.groups_changed': 'Groups changed',
  'service_account.rotated': 'Secret rotated',
  'service_account.secret_added': 'Secret added',
  'service_account.secret_deleted': 'Secret deleted',
  'service_account.key_added': 'Key added',
  'service_account.key_deleted': 'Key deleted',
  'service_account.federated_credential_added': 'Federated credential added',
  'service_account.federated_credential_deleted': 'Federated credential deleted',
  'service_account.revoked': 'Revoked',
  'service_account.activated': 'Activated',
  'service_account.deleted': 'Deleted',
};

const FILTERS = ['action', 'actor', 'target', 'since', 'until'];

export async function auditPage(ctx) {
  ctx.title('Audit log');
  const page = positiveInt(ctx.query.get('page'), 1);
  const query = { page, limit: PAGE_SIZE };
  for (const name of FILTERS) query[name] = ctx.query.get(name) || undefined;
  const peopleLoaded = loadPeople();
  let result;
  try {
    result = await listAuditEvents(query);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && error.serverMessage === 'Not found') {
      return [...head(ctx, new Map()), h('p', { class: 'empty' }, 'This server has no audit log API yet.')];
    }
    throw error;
  }
  const targets = result.data.filter((e) => e.action.startsWith('service_account.')).map((e) => e.target);
  const [names] = await Promise.all([accountNames(targets), peopleLoaded]);
  if (result.total === 0) {
    const filtered = FILTERS.some((name) => ctx.query.get(name));
    return [...head(ctx, names), h('p', { class: 'empty' }, filtered ? 'No events match these filters.' : 'Nothing has happened yet.')];
  }
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'audit-events' },
    h('thead', {}, h('tr', {}, ['Time', 'Action', 'Service account', 'By', 'From', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, result.data.map((event) => h('tr', { 'data-action': event.action },
      h('td', { class: 'nowrap' }, time(event.createdAt)),
      h('td', { class: 'nowrap' }, ACTIONS[event.action] ?? event.action),
      h('td', { class: 'target' }, target(ctx, event, names)),
      h('td', { class: 'by' }, actor(event.actor)),
      h('td', {}, event.sourceIp ?? '\u2014'),
      h('td', { class: 'small' }, describeDetails(event.details)),
    ))),
  ));
  return [...head(ctx, names), table, pager(ctx, result, ['event', 'events'])];
}

function head(ctx, names) {
  return [
    h('h1', {}, 'Audit log'),
    h('p', { class: 'lead' }, 'Every change to the workspace\u2019s service accounts, newest first. Secrets and key material are never recorded.'),
    filterForm(ctx, names),
  ];
}

/** The service account of an event by name (a link), its client ID in the tooltip. */
function target(ctx, event, names) {
  const clientId = event.target;
  if (!clientId) return '\u2014';
  // Other events (a group's, say) name their own kind of target.
  if (!event.action.startsWith('service_account.')) return h('code', {}, clientId);
  const account = names.get(clientId);
  if (!account) return h('code', { title: 'No such service account (any more)' }, clientId);
  return h('a', { href: ctx.href(`/accounts/${account.id}`), 'data-route': '', title: clientId }, account.name);
}

/**
 * The workspace's accounts by client ID: pages of the list until every one of ``wanted``
 * is found (a deleted account never is) or the list ends. Names are a nicety: a failure
 * leaves the client IDs shown.
 */
async function accountNames(wanted) {
  const names = new Map();
  const missing = new Set(wanted.filter(Boolean));
  let after = 0;
  try {
    for (let n = 0; n < NAME_PAGES && (n === 0 || missing.size); n += 1) {
      const { data, nextAfter } = await listAccountsAfter(after, 100);
      for (const account of data) {
        names.set(account.clientId, account);
        missing.delete(account.clientId);
      }
      if (nextAfter === null || nextAfter === undefined) break;
      after = nextAfter;
    }
  } catch {
    // The client IDs, then.
  }
  return names;
}

/** The details of an event in words: "from A to B", "name: X", never a JSON dump. */
export function describeDetails(details) {
  if (!details || typeof details !== 'object') return '';
  const parts = [];
  if ('from' in details || 'to' in details) {
    parts.push(`from ${show(details.from)} to ${show(details.to)}`);
  }
  for (const [key, value] of Object.entries(details)) {
    if (['id', 'from', 'to'].includes(key)) continue;
    if (key === 'gracePeriodSeconds' && typeof value === 'number') {
      parts.push(`grace period: ${value ? graceText(value) : 'none'}`);
      continue;
    }
    parts.push(`${humanKey(key)}: ${show(value)}`);
  }
  return parts.join('; ');
}

/** 3600 as "1 hour", 604800 as "7 days", 90 as "90 seconds". */
export function graceText(seconds) {
  for (const [size, one] of [[86400, 'day'], [3600, 'hour'], [60, 'minute']]) {
    if (seconds >= size && seconds % size === 0) {
      const n = seconds / size;
      return `${n} ${one}${n === 1 ? '' : 's'}`;
    }
  }
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

function show(value) {
  if (value === null || value === undefined || value === '') return 'none';
  if (Array.isArray(value)) return value.length ? value.map(show).join(', ') : 'none';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'object') {
    return Object.entries(value).map(([k, v]) => `${humanKey(k)} ${show(v)}`).join(', ');
  }
  return typeof value === 'string' ? `\u201c${value}\u201d` : String(value);
}

function humanKey(key) {
  return key.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

function localInput(iso) {
  // datetime-local wants the local wall-clock time, without a zone.
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function filterForm(ctx, names) {
  const action = h('select', { id: 'filter-action', name: 'action' },
    h('option', { value: '' }, 'Any action'),
    Object.entries(ACTIONS).map(([value, label]) => h('option', { value }, label)));
  action.value = ctx.query.get('action') ?? '';
  // An email (the server finds the member), or a user ID as recorded.
  const actor = h('input', {
    id: 'filter-actor', name: 'actor', type: 'text', inputmode: 'email', autocomplete: 'off',
    list: 'filter-actor-people', value: ctx.query.get('actor') ?? '', placeholder: 'email',
  });
  const people = h('datalist', { id: 'filter-actor-people' }, memberEmails().map((email) => h('option', { value: email })));
  const target = h('input', {
    id: 'filter-target', name: 'target', autocomplete: 'off', list: 'filter-target-accounts',
    value: ctx.query.get('target') ?? '', placeholder: 'ci_\u2026',
  });
  const accounts = h('datalist', { id: 'filter-target-accounts' },
    [...names.values()].map((a) => h('option', { value: a.clientId, label: a.name })));
  const since = h('input', { id: 'filter-since', name: 'since', type: 'datetime-local', value: localInput(ctx.query.get('since')) });
  const until = h('input', { id: 'filter-until', name: 'until', type: 'datetime-local', value: localInput(ctx.query.get('until')) });
  const labelled = (text, control, extra) => h('label', { class: 'filter' }, h('span', {}, text), control, extra);
  const form = h('form', { class: 'filters', id: 'audit-filters' },
    labelled('Action', action), labelled('By', actor, people), labelled('Service account', target, accounts),
    labelled('From', since), labelled('Until', until),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'btn' }, 'Filter'),
      h('a', { href: ctx.href('/audit'), class: 'btn', 'data-route': '' }, 'Clear')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (action.value) query.set('action', action.value);
    if (actor.value.trim()) query.set('actor', actor.value.trim());
    if (target.value.trim()) query.set('target', target.value.trim());
    // The API wants an instant with a zone: the local time the user picked, in UTC.
    if (since.value) query.set('since', new Date(since.value).toISOString());
    if (until.value) query.set('until', new Date(until.value).toISOString());
    const search = query.toString();
    ctx.navigate(`/audit${search ? `?${search}` : ''}`);
  });
  return form;
}
