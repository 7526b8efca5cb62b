// The service-account pages: the list, the create form, and one account with its actions.

import {
  ApiError,
  activateAccount,
  addSecret,
  createAccount,
  deleteAccount,
  deleteSecret,
  describeAccount,
  getAccount,
  listAccounts,
  listGroups,
  listSecrets,
  renameAccount,
  revokeAccount,
  rotateSecret,
  setAccountGroups,
} from './api.js';
import {
  clear, confirmDialog, copyText, dateText, fill, h, notify, parseList, relativeText, time, timeAgo,
  untilMs,
} from './dom.js';
import { credentialSections } from './credentials.js';
import {
  EXPIRY_WARNING_DAYS, actor, busy, expiryCell, expiryValue, field, isExpired, loadPeople, localDay, pager,
  positiveInt, reportError,
} from './views.js';

const PAGE_SIZE = 20;
const DAY_MS = 86_400_000;
// The server lets this many secrets work at once.
const LIVE_SECRETS_MAX = 5;
// What rotate offers for the old secrets: seconds they keep working, and the words for it.
const GRACE_PERIODS = [
  [0, 'None \u2014 old secret stops now'],
  [3600, '1 hour'],
  [86400, '24 hours'],
  [604800, '7 days'],
];

// A secret just created or rotated, on its way from the action to the page that shows it.
// It lives in this variable only (never in Web Storage or the address): the account page
// takes it out and holds it in its own DOM, so leaving that page or reloading loses it.
let oneTimeSecret = null;

function takeSecret(accountId) {
  const secret = oneTimeSecret;
  oneTimeSecret = null;
  return secret && secret.id === accountId ? secret : null;
}

export function statusBadge(status) {
  const label = { active: 'Active', revoked: 'Revoked', deleted: 'Deleted' }[status] ?? status;
  return h('span', { class: `badge badge-${status}` }, label);
}

/**
 * "expires in 5 days" when the account's first credential expiry (``credentialsExpireAt``)
 * is near; null when there is none or it is further off.
 */
export function expiryBadge(iso) {
  const left = untilMs(iso);
  if (!(left <= EXPIRY_WARNING_DAYS * DAY_MS)) return null;
  return h('span', {
    class: 'badge badge-expiring', 'data-expires-at': iso,
    title: `A credential of this account expires on ${dateText(iso)}.`,
  }, left <= 0 ? 'credential expired' : `expires ${relativeText(iso)}`);
}

function groupChips(groups) {
  if (!groups?.length) return h('span', { class: 'muted' }, 'no groups');
  return h('span', { class: 'chips' }, groups.map((g) => h('span', { class: 'chip' }, g)));
}

/** The workspace's groups, or null when the server cannot list them (an older one). */
async function workspaceGroups() {
  try {
    return (await listGroups()).data;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

/**
 * The groups to choose from: a checkbox each (``selected`` ticked), its permissions in the
 * tooltip; ``value()`` the ticked names. Without a list, a text input of names.
 */
function groupPicker(id, groups, selected) {
  if (!groups) {
    const input = h('input', { id, name: 'groups', autocomplete: 'off', placeholder: 'api-users', value: selected.join(', ') });
    return {
      control: field('Groups', input, 'Group names separated by commas; empty for none.'),
      value: () => parseList(input.value),
      set: (names) => { input.value = names.join(', '); },
    };
  }
  const names = [...new Set([...groups.map((g) => g.name), ...selected])];
  const about = new Map(groups.map((g) => [g.name, g]));
  const boxes = names.map((name) => h('input', {
    type: 'checkbox', name: 'groups', value: name, id: `${id}-${name}`, checked: selected.includes(name),
  }));
  const control = h('fieldset', { class: 'group-choices', id, 'aria-describedby': `${id}-help` },
    h('legend', {}, 'Groups'),
    h('div', { class: 'choices' }, boxes.map((box) => {
      const group = about.get(box.value);
      const perms = group?.permissions.length ? group.permissions.join(', ') : 'no permissions';
      return h('label', { class: 'choice', for: box.id, title: group ? perms : 'Not a group of this workspace' },
        box, ' ', box.value, group?.isDefault ? h('span', { class: 'muted small' }, ' (default)') : null);
    })),
    h('p', { class: 'help', id: `${id}-help` },
      'A token of the account carries the permissions of its groups (hover a group to see them). None ticked: no groups.'));
  return {
    control,
    value: () => boxes.filter((box) => box.checked).map((box) => box.value),
    set: (chosen) => { for (const box of boxes) box.checked = chosen.includes(box.value); },
  };
}

// --- the list --------------------------------------------------------------------------

export async function accountsPage(ctx) {
  const page = positiveInt(ctx.query.get('page'), 1);
  const result = await listAccounts(page, PAGE_SIZE);
  ctx.title('Service accounts');
  const head = h('div', { class: 'page-head' },
    h('h1', {}, 'Service accounts'),
    h('a', { href: ctx.href('/new'), class: 'btn btn-primary', 'data-route': '' }, 'New service account'),
  );
  const intro = h('p', { class: 'lead' },
    'Programs sign in with a service account\u2019s client ID and a secret, a key or their platform\u2019s own ',
    'token (the OAuth 2.0 client-credentials grant) and call the workspace API with the token they get.');
  if (result.total === 0) {
    return [head, intro, h('div', { class: 'empty' },
      h('p', {}, 'This workspace has no service accounts yet.'),
      h('a', { href: ctx.href('/new'), class: 'btn', 'data-route': '' }, 'Create the first one'))];
  }
  const rows = result.data.map((a) => h('tr', { 'data-account-id': a.id },
    h('td', {},
      h('a', { href: ctx.href(`/accounts/${a.id}`), 'data-route': '', class: 'name' }, a.name),
      a.description ? h('div', { class: 'muted small clip' }, a.description) : null),
    h('td', {}, h('code', {}, a.clientId)),
    h('td', { class: 'status' }, statusBadge(a.status), ' ', expiryBadge(a.credentialsExpireAt)),
    h('td', {}, groupChips(a.groups)),
    h('td', { class: 'nowrap last-used' }, timeAgo(a.lastUsedAt, 'never')),
    h('td', { class: 'nowrap' }, time(a.createdAt)),
    h('td', { class: 'nowrap' }, time(a.updatedAt)),
  ));
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'accounts' },
    h('thead', {}, h('tr', {},
      ['Name', 'Client ID', 'Status', 'Groups', 'Last used', 'Created', 'Last changed'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'Nothing on this page.'))),
  ));
  return [head, intro, table, pager(ctx, result, ['service account', 'service accounts'])];
}

// --- create ----------------------------------------------------------------------------

export async function createPage(ctx) {
  ctx.title('New service account');
  const slot = h('div', { class: 'slot' });
  const name = h('input', { id: 'name', name: 'name', required: true, autocomplete: 'off' });
  const description = h('textarea', { id: 'description', name: 'description', rows: 3 });
  const choices = await workspaceGroups();
  // The workspace's default groups ticked: what a new account gets when given none.
  const groups = groupPicker('groups', choices, (choices ?? []).filter((g) => g.isDefault).map((g) => g.name));
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create service account');
  const form = h('form', { class: 'form', id: 'create-form', novalidate: true },
    field('Name', name, 'What uses it, e.g. \u201cProduction API client\u201d.'),
    field('Description (optional)', description),
    groups.control,
    h('div', { class: 'actions' }, submit, h('a', { href: ctx.href('/'), class: 'btn', 'data-route': '' }, 'Cancel')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!name.value.trim()) {
      notify(slot, 'error', 'Give the service account a name.');
      name.focus();
      return;
    }
    busy(submit, async () => {
      clear(slot);
      try {
        const body = { name: name.value.trim() };
        if (description.value.trim()) body.description = description.value.trim();
        const chosen = groups.value();
        // Typed names, none given: the workspace's default groups.
        if (choices || chosen.length) body.groups = chosen;
        const created = await createAccount(body);
        const { clientSecret, ...account } = created;
        // The account travels along, so the page need not fetch it (a failed fetch there
        // would lose the secret for good).
        oneTimeSecret = {
          id: created.id, clientId: created.clientId, clientSecret, secretId: created.secretId, kind: 'created', account,
        };
        ctx.navigate(`/accounts/${created.id}`);
      } catch (error) {
        reportError(slot, 'The service account was not created.', error);
      }
    });
  });
  ctx.autofocus = name;
  return [
    h('a', { href: ctx.href('/'), class: 'back', 'data-route': '' }, '\u2190 All service accounts'),
    h('h1', {}, 'New service account'),
    slot,
    form,
  ];
}

// --- one account -----------------------------------------------------------------------

export async function accountPage(ctx, id) {
  const secret = takeSecret(id);
  // All at once; a failed list costs its section only, not the page.
  const firstSecrets = listSecrets(id).then((result) => result.data, (error) => ({ error }));
  const groupChoices = workspaceGroups().catch(() => null);
  const peopleLoaded = loadPeople().catch(() => false);
  let account;
  const credentials = credentialSections(id, () => account, () => getAccount(account.id).then(show, () => null));
  account = secret?.account ?? (await getAccount(id));
  await peopleLoaded;
  ctx.title(account.name);
  const secretSlot = h('div', { class: 'slot', id: 'secret-slot' });
  const title = h('h1', { class: 'account-title' });
  const details = h('dl', { class: 'details', id: 'details' });
  const statusSection = h('section', { class: 'card', id: 'status-section' });

  function show(next) {
    account = next;
    ctx.title(account.name);
    fill(title, account.name, ' ', statusBadge(account.status));
    fill(details,
      item('Client ID', h('span', { class: 'inline' }, h('code', { id: 'client-id' }, account.clientId),
        copyButton(account.clientId, 'Copy client ID'))),
      item('Status', statusBadge(account.status)),
      item('Description', account.description ? account.description : h('span', { class: 'muted' }, 'none')),
      item('Groups', groupChips(account.groups)),
      item('Grant types', account.grant_types?.join(', ') || '\u2014'),
      item('Scope', account.scope || '\u2014'),
      item('Created', time(account.createdAt), account.createdBy ? [' by ', actor(account.createdBy)] : null),
      item('Last changed', time(account.updatedAt)),
      item('Last used', timeAgo(account.lastUsedAt, 'never')),
      item('Credentials expire', account.credentialsExpireAt
        ? [time(account.credentialsExpireAt), ' ', expiryBadge(account.credentialsExpireAt)]
        : h('span', { class: 'muted' }, 'never')),
    );
    renderStatus();
  }

  function showSecret(secret) {
    fill(secretSlot, secretPanel(secret, () => clear(secretSlot)));
    secretSlot.scrollIntoView({ block: 'start' });
    secretSlot.querySelector('input').focus();
  }

  // The secrets: a table, a form to add one, rotate.
  const secretsSlot = h('div', { class: 'slot', id: 'secrets-slot' });
  const secretsTable = h('div', { class: 'secrets-list' });
  const secretsLimit = h('p', { class: 'help', id: 'secrets-limit', hidden: true });

  function renderSecrets(list) {
    const live = list.filter((s) => !isExpired(s)).length;
    secretsLimit.hidden = live < LIVE_SECRETS_MAX;
    secretsLimit.textContent = `This account has ${live} working secrets, the most it may have: `
      + 'delete one before adding another, or rotate.';
    if (!list.length) {
      fill(secretsTable, h('p', { class: 'muted', id: 'no-secrets' }, 'This account has no secrets.'));
      return;
    }
    fill(secretsTable, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'secrets' },
      h('thead', {}, h('tr', {},
        ['Secret', 'Created', 'Created by', 'Expires', 'Last used', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, list.map(secretRow)),
    )));
  }

  function secretRow(s) {
    const expired = isExpired(s);
    const name = s.hint ? `the secret ${s.hint}` : 'the secret from before the upgrade';
    const remove = h('button', {
      type: 'button', class: 'btn btn-small', 'data-delete-secret': s.id, 'aria-label': `Delete ${name}`,
    }, 'Delete\u2026');
    remove.addEventListener('click', () => removeSecret(s, name, remove));
    return h('tr', { 'data-secret-id': s.id, class: expired ? 'expired' : null },
      h('td', { class: 'nowrap' }, s.hint
        ? h('code', { class: 'hint' }, s.hint)
        : h('span', { class: 'muted', title: 'Only a hash of this secret was kept, so it has no hint.' }, 'from before the upgrade')),
      h('td', { class: 'nowrap' }, time(s.createdAt)),
      h('td', {}, actor(s.createdBy)),
      h('td', { class: 'nowrap expires' }, expiryCell(s)),
      h('td', { class: 'nowrap last-used' }, timeAgo(s.lastUsedAt, 'never')),
      h('td', { class: 'row-actions' }, remove),
    );
  }

  async function loadSecrets(pending) {
    const list = await pending;
    if (Array.isArray(list)) {
      renderSecrets(list);
      return list;
    }
    fill(secretsTable);
    reportError(secretsSlot, 'The secrets could not be listed.', list.error);
    return [];
  }

  /** After a change: the account (last used, first expiry) and its secrets, fetched anew. */
  async function refreshCredentials() {
    const [, list] = await Promise.all([
      getAccount(account.id).then(show, () => null),
      loadSecrets(listSecrets(account.id).then((result) => result.data, (error) => ({ error }))),
    ]);
    return list;
  }

  /** Name the hint of the secret on show, once the list has it. */
  function nameHint(hint) {
    const slot = secretSlot.querySelector('#secret-hint');
    if (slot && hint) fill(slot, hintNote(hint));
  }

  async function removeSecret(s, name, button) {
    const ok = await confirmDialog({
      title: 'Delete this secret?',
      text: [`${name.charAt(0).toUpperCase()}${name.slice(1)} of \u201c${account.name}\u201d stops working at once: `
        + 'programs that still use it are refused.', 'This cannot be undone.'],
      confirmLabel: 'Delete secret',
      danger: true,
    });
    if (!ok) return;
    busy(button, async () => {
      clear(secretsSlot);
      try {
        await deleteSecret(account.id, s.id);
        notify(secretsSlot, 'ok', `${name.charAt(0).toUpperCase()}${name.slice(1)} was deleted.`);
      } catch (error) {
        if (error instanceof ApiError && error.status === 409 && !error.serverMessage) {
          notify(secretsSlot, 'error', 'The secret was not deleted. It is the account\u2019s last working '
            + 'credential: add another one first, or delete the service account.');
        } else {
          reportError(secretsSlot, 'The secret was not deleted.', error);
        }
        return;
      }
      await refreshCredentials();
    });
  }

  const expiryInput = h('input', {
    type: 'date', id: 'secret-expires', name: 'expiresAt', min: localDay(1), 'aria-describedby': 'secret-expires-help',
  });
  const addButton = h('button', { type: 'submit', class: 'btn', id: 'add-secret' }, 'Add secret');
  const addForm = h('form', { class: 'form add-secret-form', id: 'add-secret-form', novalidate: true },
    h('h3', {}, 'Add a secret'),
    h('div', { class: 'add-secret-row' },
      field('Expires on (optional)', expiryInput),
      h('div', { class: 'actions' }, addButton)),
    h('p', { class: 'help', id: 'secret-expires-help' },
      'The secret stops working at the start of that day, your time; leave it empty for a secret that does not expire. '
      + 'The other secrets keep working.'),
    secretsLimit,
  );
  addForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const expiresAt = expiryValue(expiryInput);
    if (expiresAt === undefined) {
      notify(secretsSlot, 'error', 'The secret was not added. Choose a day after today, or none.');
      expiryInput.focus();
      return;
    }
    busy(addButton, async () => {
      clear(secretsSlot);
      let added;
      try {
        added = await addSecret(account.id, expiresAt);
      } catch (error) {
        reportError(secretsSlot, 'The secret was not added.', error);
        return;
      }
      expiryInput.value = '';
      showSecret({ clientId: account.clientId, clientSecret: added.clientSecret, hint: added.hint, kind: 'added', expiresAt: added.expiresAt });
      await refreshCredentials();
    });
  });

  // Name, description, groups: one small form each.
  const nameSlot = h('div', { class: 'slot' });
  const nameInput = h('input', { id: 'edit-name', name: 'name', value: account.name, autocomplete: 'off' });
  const nameForm = editForm('rename-form', 'Name', nameInput, 'Save name', nameSlot, async () => {
    if (!nameInput.value.trim()) throw new Error('empty');
    show(await renameAccount(account.id, nameInput.value.trim()));
    return 'Name saved.';
  }, 'The name was not saved.');

  const descSlot = h('div', { class: 'slot' });
  const descInput = h('textarea', { id: 'edit-description', name: 'description', rows: 3, value: account.description ?? '' });
  const descForm = editForm('describe-form', 'Description', descInput, 'Save description', descSlot, async () => {
    show(await describeAccount(account.id, descInput.value.trim() || null));
    return descInput.value.trim() ? 'Description saved.' : 'Description removed.';
  }, 'The description was not saved.');

  const groupsSlot = h('div', { class: 'slot' });
  const groupsPicker = groupPicker('edit-groups', await groupChoices, account.groups);
  const groupsForm = editForm('groups-form', null, groupsPicker.control, 'Save groups', groupsSlot, async () => {
    show(await setAccountGroups(account.id, groupsPicker.value()));
    groupsPicker.set(account.groups);
    return 'Groups saved. Tokens issued from now on carry them.';
  }, 'The groups were not saved.');

  // Rotate.
  const rotateSlot = h('div', { class: 'slot' });
  const rotateButton = h('button', { type: 'button', class: 'btn', id: 'rotate' }, 'Rotate secret\u2026');
  rotateButton.addEventListener('click', async () => {
    const values = await confirmDialog({
      title: 'Rotate the client secret?',
      text: [`A new secret is made for \u201c${account.name}\u201d. Its other secrets stop working at once, `
        + 'or when the grace period chosen here ends.',
        'Programs that still use an old secret are refused from then on, until they are given the new one.'],
      confirmLabel: 'Rotate secret',
      fields: [
        h('div', { class: 'field' },
          h('label', { for: 'rotate-grace' }, 'Grace period for the old secrets'),
          h('select', { id: 'rotate-grace', name: 'gracePeriodSeconds' },
            GRACE_PERIODS.map(([seconds, label]) => h('option', { value: seconds }, label)))),
        h('label', { class: 'check' },
          h('input', { type: 'checkbox', name: 'revokeTokens', id: 'rotate-revoke-tokens' }),
          ' Also refuse the access tokens already issued to it'),
      ],
    });
    if (!values) return;
    const grace = Number.parseInt(values.gracePeriodSeconds ?? '0', 10) || 0;
    busy(rotateButton, async () => {
      clear(rotateSlot);
      let rotated;
      try {
        rotated = await rotateSecret(account.id, { revokeTokens: values.revokeTokens === 'on', gracePeriodSeconds: grace });
      } catch (error) {
        reportError(rotateSlot, 'The secret was not rotated.', error);
        return;
      }
      show({ ...account, name: rotated.name, updatedAt: rotated.updatedAt });
      showSecret({
        clientId: rotated.clientId, clientSecret: rotated.clientSecret, kind: 'rotated',
        graceUntil: grace ? new Date(Date.now() + grace * 1000).toISOString() : null,
      });
      const list = await refreshCredentials();
      nameHint(list.find((s) => s.id === rotated.secretId)?.hint);
    });
  });

  // Revoke / activate.
  const statusSlot = h('div', { class: 'slot' });
  function renderStatus() {
    const revoked = account.status === 'revoked';
    const button = h('button', { type: 'button', class: revoked ? 'btn btn-primary' : 'btn btn-warning', id: revoked ? 'activate' : 'revoke' },
      revoked ? 'Activate' : 'Revoke\u2026');
    button.addEventListener('click', async () => {
      if (!revoked) {
        const ok = await confirmDialog({
          title: 'Revoke this service account?',
          text: [`\u201c${account.name}\u201d can get no more tokens, and the tokens it already has are refused by the API at once.`,
            'You can activate it again later; tokens issued before now stay refused.'],
          confirmLabel: 'Revoke',
          danger: true,
        });
        if (!ok) return;
      }
      busy(button, async () => {
        clear(statusSlot);
        try {
          show(revoked ? await activateAccount(account.id) : await revokeAccount(account.id));
          notify(statusSlot, 'ok', revoked
            ? 'The service account is active again: it can get tokens with its credentials.'
            : 'The service account is revoked: its token requests and tokens are refused.');
        } catch (error) {
          reportError(statusSlot, revoked ? 'The service account was not activated.' : 'The service account was not revoked.', error);
        }
      });
    });
    fill(statusSection,
      h('h2', {}, 'Status'),
      h('p', {}, revoked
        ? 'Revoked: token requests with its credentials are refused, and so are tokens issued before the revocation.'
        : 'Active: it can get access tokens with its client ID and credentials.'),
      h('div', { class: 'actions' }, button),
      statusSlot);
  }

  // Delete.
  const deleteSlot = h('div', { class: 'slot' });
  const deleteButton = h('button', { type: 'button', class: 'btn btn-danger', id: 'delete' }, 'Delete service account\u2026');
  deleteButton.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Delete this service account?',
      text: [`\u201c${account.name}\u201d (${account.clientId}) is deleted for good: its credentials and tokens are refused at once.`,
        'This cannot be undone.'],
      confirmLabel: 'Delete for good',
      danger: true,
    });
    if (!ok) return;
    busy(deleteButton, async () => {
      clear(deleteSlot);
      try {
        await deleteAccount(account.id);
        ctx.navigate('/', { flash: ['ok', `The service account \u201c${account.name}\u201d was deleted.`] });
      } catch (error) {
        reportError(deleteSlot, 'The service account was not deleted.', error);
      }
    });
  });

  show(account);
  const [listed] = await Promise.all([loadSecrets(firstSecrets), credentials.ready]);
  if (secret) {
    // A new account's one secret: name its hint, as for one added later.
    secret.hint ??= listed.find((s) => secret.secretId !== undefined && s.id === secret.secretId)?.hint;
    showSecret(secret);
    ctx.autofocus = secretSlot.querySelector('#copy-secret');
  }

  return [
    h('a', { href: ctx.href('/'), class: 'back', 'data-route': '' }, '\u2190 All service accounts'),
    title,
    secretSlot,
    h('section', { class: 'card' }, h('h2', {}, 'Details'), details),
    h('section', { class: 'card', id: 'secrets-section' }, h('h2', {}, 'Client secrets'),
      h('p', {}, `A program gets tokens with the client ID and any one of these secrets that works (at most ${LIVE_SECRETS_MAX} at once). `
        + 'A secret is shown only when it is made: add a second one to move programs over one at a time, or rotate to replace them all.'),
      secretsSlot,
      secretsTable,
      addForm,
      h('div', { class: 'rotate-part' },
        h('h3', {}, 'Rotate'),
        h('p', {}, 'Rotating makes a new secret and refuses the others at once, or after a grace period you choose.'),
        h('div', { class: 'actions' }, rotateButton), rotateSlot)),
    credentials.keys,
    credentials.federated,
    h('section', { class: 'card' }, h('h2', {}, 'Edit'), nameForm, descForm, groupsForm),
    statusSection,
    h('section', { class: 'card card-danger' }, h('h2', {}, 'Delete'),
      h('p', {}, 'Deleting removes the service account for good; its client ID can never get a token again.'),
      h('div', { class: 'actions' }, deleteButton), deleteSlot),
  ];
}

function item(label, ...value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

function editForm(id, label, control, buttonLabel, slot, save, failure, help) {
  const button = h('button', { type: 'submit', class: 'btn' }, buttonLabel);
  const form = h('form', { class: 'form edit-form', id, novalidate: true },
    label ? field(label, control, help) : control, h('div', { class: 'actions' }, button), slot);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(button, async () => {
      clear(slot);
      try {
        notify(slot, 'ok', await save());
      } catch (error) {
        if (error.message === 'empty') notify(slot, 'error', `${failure} The name must not be empty.`);
        else reportError(slot, failure, error);
      }
    });
  });
  return form;
}

function copyButton(text, label) {
  const button = h('button', { type: 'button', class: 'btn btn-small', title: label, 'aria-label': label }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      button.textContent = (await copyText(text)) ? 'Copied' : 'Select and copy';
    } catch {
      button.textContent = 'Copy failed';
    }
    setTimeout(() => { button.textContent = 'Copy'; }, 2000);
  });
  return button;
}

function hintNote(hint) {
  return [' \u00b7 listed below as ', h('code', {}, hint)];
}

function secretPanel(secret, dismiss) {
  const input = h('input', {
    id: 'one-time-secret', class: 'secret', type: 'text', readonly: true, value: secret.clientSecret,
    'aria-label': 'Client secret', spellcheck: 'false', autocomplete: 'off',
  });
  input.addEventListener('focus', () => input.select());
  const status = h('span', { class: 'copy-status', role: 'status', id: 'copy-status' });
  const copy = h('button', { type: 'button', class: 'btn btn-primary', id: 'copy-secret' }, 'Copy secret');
  copy.addEventListener('click', async () => {
    try {
      status.textContent = (await copyText(secret.clientSecret, input))
        ? 'Copied to the clipboard.'
        : 'Selected: press Ctrl+C (\u2318C on a Mac) to copy.';
    } catch {
      status.textContent = 'Copying failed: select the secret and copy it by hand.';
    }
  });
  const hide = h('button', { type: 'button', class: 'btn', id: 'hide-secret' }, 'I have stored it \u2014 hide the secret');
  hide.addEventListener('click', () => {
    input.value = '';
    dismiss();
  });
  const rotated = secret.kind === 'rotated';
  let after = null;
  if (rotated && secret.graceUntil) {
    after = `The old secrets keep working until ${dateText(secret.graceUntil)} at the latest: `
      + 'give the new one to every program that used them before then.';
  } else if (rotated) {
    after = 'The old secret no longer works: give the new one to every program that used it.';
  } else if (secret.kind === 'added') {
    after = `The account\u2019s other secrets keep working. ${secret.expiresAt
      ? `This one stops working on ${dateText(secret.expiresAt)}.` : 'This one does not expire.'}`;
  }
  return h('section', { class: 'secret-panel', id: 'secret-panel', 'aria-labelledby': 'secret-title' },
    h('h2', { id: 'secret-title' }, secret.kind === 'created' ? 'Client secret' : 'New client secret'),
    h('p', { class: 'warning' },
      h('strong', {}, 'Copy the secret now: it is shown this once. '),
      'The server keeps only a one-way hash of it, so nobody can show it again \u2014 not after a reload, ',
      'not to an administrator. If it is lost, add or rotate a secret to get a new one.'),
    h('div', { class: 'secret-row' }, input, copy),
    status,
    h('p', {}, 'Client ID: ', h('code', {}, secret.clientId),
      h('span', { id: 'secret-hint' }, secret.hint ? hintNote(secret.hint) : null)),
    after ? h('p', { id: 'secret-after' }, after) : null,
    h('div', { class: 'actions' }, hide),
  );
}
