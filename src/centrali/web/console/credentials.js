// The credentials of one service account besides its secrets: public keys (private_key_jwt)
// and federated credentials (a workload's own OIDC token traded for ours). Two sections of
// the account page, each a table, a form to add one, and delete with confirmation.

import {
  ApiError, addFederated, addKey, deleteFederated, deleteKey, listFederated, listKeys,
} from './api.js';
import { issuer } from './auth.js';
import { clear, confirmDialog, fill, h, notify, time, timeAgo } from './dom.js';
import {
  actor, busy, expiryCell, expiryInput, expiryValue, field, isExpired, reportError,
} from './views.js';

// The server lets this many of each work at once.
const LIVE_KEYS_MAX = 5;
const LIVE_FEDERATED_MAX = 20;

const LAST_CREDENTIAL = 'It is the account\u2019s last working credential: add another one first, '
  + 'or delete the service account.';

// --- reading a pasted key --------------------------------------------------------------

/** A pasted key the console will not send, and why (a sentence for the page). */
class KeyTextError extends Error {}

// JWK members of private and symmetric keys: such a key never leaves the browser.
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'];

// Algorithm identifiers in a SubjectPublicKeyInfo, as DER bytes in hex.
const OIDS = {
  rsa: '2a864886f70d010101',
  rsaPss: '2a864886f70d01010a',
  ec: '2a8648ce3d0201',
  p256: '2a8648ce3d030107',
  p384: '2b81040022',
  p521: '2b81040023',
  ed25519: '06032b6570',
  ed448: '06032b6571',
};

const PEM_HINTS = [
  [/PRIVATE KEY-----/, 'This is a private key: it stays with the program that signs. Paste its public key '
    + '(openssl pkey -in key.pem -pubout prints it).'],
  [/-----BEGIN RSA PUBLIC KEY-----/, 'This RSA key is in the older PKCS #1 form. Convert it with '
    + 'openssl rsa -RSAPublicKey_in -in key.pem -pubout, then paste the result.'],
  [/-----BEGIN CERTIFICATE-----/, 'This is a certificate. Paste the public key inside it '
    + '(openssl x509 -in cert.pem -pubkey -noout prints it).'],
  [/^(ssh-(rsa|ed25519)|ecdsa-sha2-nistp256) /, 'This is an SSH public key. Convert it with '
    + 'ssh-keygen -e -m PKCS8 -f key.pub, then paste the result.'],
];

/**
 * The public JWK to register, from a pasted JWK (JSON) or PEM public key. The PEM is turned
 * into a JWK here, by the browser's WebCrypto: an RSA key signs with RS256, EC P-256 with
 * ES256, Ed25519 with EdDSA. Refuses (KeyTextError) what must not or cannot be sent.
 */
export async function publicJwkFrom(text) {
  const pasted = text.trim();
  if (!pasted) throw new KeyTextError('Paste a public key: a JWK (JSON) or a PEM public key.');
  if (pasted.startsWith('{')) return jwkFromJson(pasted);
  for (const [pattern, hint] of PEM_HINTS) {
    if (pattern.test(pasted)) throw new KeyTextError(hint);
  }
  const pem = pasted.match(/^-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----$/);
  if (!pem) {
    throw new KeyTextError('This is neither a JWK nor a PEM public key. Paste a JSON object '
      + '({"kty": \u2026}) or the whole PEM block, from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----.');
  }
  let der;
  try {
    der = Uint8Array.from(atob(pem[1].replace(/\s+/g, '')), (c) => c.charCodeAt(0));
  } catch {
    throw new KeyTextError('The PEM block is damaged (it is not base64). Paste it again, whole.');
  }
  return jwkFromSpki(der);
}

function jwkFromJson(pasted) {
  let jwk;
  try {
    jwk = JSON.parse(pasted);
  } catch (error) {
    throw new KeyTextError(`This is not valid JSON (${error.message}). Paste one JWK, a JSON object.`);
  }
  if (jwk && Array.isArray(jwk.keys)) {
    // A JWK Set: fine when it holds just one key.
    if (jwk.keys.length !== 1) {
      throw new KeyTextError(`This is a key set with ${jwk.keys.length} keys. Paste one key of it, the object inside "keys".`);
    }
    [jwk] = jwk.keys;
  }
  if (jwk && typeof jwk === 'object' && !Array.isArray(jwk)) {
    const held = PRIVATE_MEMBERS.filter((m) => m in jwk);
    if (held.length) {
      throw new KeyTextError(`This JWK holds a private key (${held.join(', ')}): it stays with the program `
        + 'that signs and was not sent. Paste the public key only.');
    }
    if (jwk.kty === 'oct' || 'k' in jwk) {
      throw new KeyTextError('This is a symmetric key: it was not sent. Only public keys (RSA, EC P-256, Ed25519) are accepted.');
    }
  }
  // Anything else the server judges, and says why it refuses.
  return jwk;
}

async function jwkFromSpki(der) {
  const head = Array.from(der.subarray(0, 32), (b) => b.toString(16).padStart(2, '0')).join('');
  let algorithm;
  let alg;
  if (head.includes(OIDS.rsa)) {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    alg = 'RS256';
  } else if (head.includes(OIDS.ec)) {
    if (!head.includes(OIDS.p256)) {
      const curve = head.includes(OIDS.p384) ? 'P-384' : head.includes(OIDS.p521) ? 'P-521' : 'this curve';
      throw new KeyTextError(`EC keys on ${curve} are not accepted: an EC key must be on P-256 (ES256).`);
    }
    algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
    alg = 'ES256';
  } else if (head.includes(OIDS.ed25519)) {
    algorithm = { name: 'Ed25519' };
    alg = 'EdDSA';
  } else if (head.includes(OIDS.rsaPss)) {
    throw new KeyTextError('This browser cannot read RSA-PSS PEM keys. Paste the key as a JWK with "alg": "PS256".');
  } else if (head.includes(OIDS.ed448)) {
    throw new KeyTextError('Ed448 keys are not accepted: use RSA, EC P-256 or Ed25519.');
  } else {
    throw new KeyTextError('This kind of public key is not accepted: use RSA, EC P-256 or Ed25519.');
  }
  if (!globalThis.crypto?.subtle) {
    throw new KeyTextError('This page cannot convert PEM keys (the browser offers no WebCrypto here, '
      + 'as on plain HTTP). Paste the key as a JWK.');
  }
  let key;
  try {
    key = await crypto.subtle.importKey('spki', der, algorithm, true, ['verify']);
  } catch (error) {
    if (alg === 'EdDSA' && error?.name === 'NotSupportedError') {
      throw new KeyTextError('This browser cannot read Ed25519 PEM keys. Paste the key as a JWK '
        + '({"kty": "OKP", "crv": "Ed25519", "x": \u2026}).');
    }
    throw new KeyTextError('The browser could not read this PEM public key: it is damaged or not '
      + 'the kind it claims. Paste it again, or paste the key as a JWK.');
  }
  const jwk = await crypto.subtle.exportKey('jwk', key);
  // The public members only, and the algorithm the key signs with.
  if (jwk.kty === 'RSA') return { kty: 'RSA', n: jwk.n, e: jwk.e, alg };
  if (jwk.kty === 'EC') return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y, alg };
  return { kty: 'OKP', crv: jwk.crv, x: jwk.x, alg };
}

// --- federated presets -----------------------------------------------------------------

const PRESETS = {
  github: {
    label: 'GitHub Actions',
    name: 'GitHub Actions',
    issuer: 'https://token.actions.githubusercontent.com',
    subject: 'repo:ORG/REPO:ref:refs/heads/main',
    select: 'ORG/REPO',
    focus: 'subject',
    hint: 'Replace ORG/REPO with the repository. The subject names the runs to trust: '
      + 'repo:ORG/REPO:ref:refs/heads/main for pushes to main, repo:ORG/REPO:environment:NAME for jobs '
      + 'with an environment, repo:ORG/REPO:pull_request for pull requests. The job needs the '
      + 'permission id-token: write, and asks GitHub for a token with the audience below.',
  },
  kubernetes: {
    label: 'Kubernetes',
    name: 'Kubernetes',
    issuer: '',
    subject: 'system:serviceaccount:NAMESPACE:NAME',
    select: 'NAMESPACE:NAME',
    focus: 'issuer',
    hint: 'Fill in your cluster\u2019s service-account issuer URL: kubectl get --raw '
      + '/.well-known/openid-configuration | jq -r .issuer prints it (its discovery document and keys '
      + 'must be reachable from this server over HTTPS). Replace NAMESPACE:NAME with the pod\u2019s '
      + 'service account; the pod mounts a projected service-account token with the audience below.',
  },
};

/** What is left of a preset's template in a subject, for the page to ask about. */
function templateLeft(subject) {
  if (subject.includes('ORG/REPO')) return 'ORG/REPO';
  const k8s = subject.match(/:(NAMESPACE|NAME)(?=:|$)/);
  return k8s ? k8s[1] : null;
}

// --- the sections ----------------------------------------------------------------------

/**
 * The Keys and Federated credentials sections of an account page. ``account()`` is the
 * account as shown now; ``onChange`` runs after an add or delete (to refresh the details).
 * Both lists are asked for at once; ``ready`` settles when both are shown (or failed).
 */
export function credentialSections(accountId, account, onChange) {
  const keys = keysSection(accountId, account, onChange);
  const federated = federatedSection(accountId, account, onChange);
  return { keys: keys.section, federated: federated.section, ready: Promise.all([keys.ready, federated.ready]) };
}

function settled(promise) {
  return promise.then((result) => result.data, (error) => ({ error }));
}

/** ``text`` in a <code> that may wrap after "/", ":" and ".", as addresses and claims do. */
function breakable(text) {
  const parts = String(text).split(/(?<=[/:.])(?!\/)/);
  return h('code', {}, parts.map((part, i) => (i ? [h('wbr', {}), part] : part)));
}

function capital(text) {
  return `${text.charAt(0).toUpperCase()}${text.slice(1)}`;
}

/** Delete one credential after a confirmation: the 409 of the last one in words. */
async function removeCredential({ slot, button, what, confirm, remove, done }) {
  const ok = await confirmDialog({ ...confirm, danger: true });
  if (!ok) return;
  await busy(button, async () => {
    clear(slot);
    try {
      await remove();
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && !error.serverMessage) {
        notify(slot, 'error', `${capital(what)} was not deleted. ${LAST_CREDENTIAL}`);
      } else {
        reportError(slot, `${capital(what)} was not deleted.`, error);
      }
      return;
    }
    notify(slot, 'ok', `${capital(what)} was deleted.`);
    await done();
  });
}

function keysSection(accountId, account, onChange) {
  const slot = h('div', { class: 'slot', id: 'keys-slot' });
  const list = h('div', { class: 'credential-list' });

  function render(keys) {
    if (!keys.length) {
      fill(list, h('p', { class: 'muted', id: 'no-keys' }, 'This account has no keys.'));
      return;
    }
    fill(list, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'keys' },
      h('thead', {}, h('tr', {},
        ['Key ID (kid)', 'Algorithm', 'Created', 'Created by', 'Expires', 'Last used', '']
          .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, keys.map(row)),
    )));
  }

  function row(k) {
    const what = `the key ${k.kid}`;
    const remove = h('button', {
      type: 'button', class: 'btn btn-small', 'data-delete-key': k.kid, 'aria-label': `Delete ${what}`,
    }, 'Delete\u2026');
    remove.addEventListener('click', () => removeCredential({
      slot, button: remove, what,
      confirm: {
        title: 'Delete this key?',
        text: [`Programs of \u201c${account().name}\u201d that sign with the key ${k.kid} are refused at once.`,
          'This cannot be undone.'],
        confirmLabel: 'Delete key',
      },
      remove: () => deleteKey(accountId, k.kid),
      done: refresh,
    }));
    return h('tr', { 'data-kid': k.kid, class: isExpired(k) ? 'expired' : null },
      h('td', { class: 'kid-cell' }, h('code', { class: 'kid', title: k.kid }, k.kid)),
      h('td', { class: 'nowrap alg' }, k.alg, h('span', { class: 'muted small' }, ` (${k.kty})`)),
      h('td', { class: 'nowrap' }, time(k.createdAt)),
      h('td', {}, actor(k.createdBy)),
      h('td', { class: 'nowrap expires' }, expiryCell(k)),
      h('td', { class: 'nowrap last-used' }, timeAgo(k.lastUsedAt, 'never')),
      h('td', { class: 'row-actions' }, remove),
    );
  }

  async function load(pending) {
    const keys = await pending;
    if (Array.isArray(keys)) {
      render(keys);
      return;
    }
    fill(list);
    reportError(slot, 'The keys could not be listed.', keys.error);
  }

  async function refresh() {
    await Promise.all([load(settled(listKeys(accountId))), onChange()]);
  }

  const text = h('textarea', {
    id: 'key-text', name: 'key', rows: 5, spellcheck: 'false', autocomplete: 'off', class: 'key-text',
    placeholder: '-----BEGIN PUBLIC KEY-----\n\u2026\n-----END PUBLIC KEY-----\nor {"kty": "EC", "crv": "P-256", "x": "\u2026", "y": "\u2026"}',
  });
  const expires = expiryInput('key-expires');
  const button = h('button', { type: 'submit', class: 'btn', id: 'add-key' }, 'Add key');
  const form = h('form', { class: 'form add-credential-form', id: 'add-key-form', novalidate: true },
    h('h3', {}, 'Add a key'),
    field('Public key (JWK or PEM)', text,
      'Paste the public key only; the private key stays with the program. A PEM key is turned into a JWK in '
      + 'this browser: RSA keys then sign with RS256, EC P-256 keys with ES256, Ed25519 keys with EdDSA. '
      + 'For PS256, paste a JWK with "alg": "PS256". The key ID is the JWK\u2019s kid, or its thumbprint.'),
    h('div', { class: 'add-credential-row' },
      field('Expires on (optional)', expires),
      h('div', { class: 'actions' }, button)),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const expiresAt = expiryValue(expires);
    if (expiresAt === undefined) {
      notify(slot, 'error', 'The key was not added. Choose a day after today, or none.');
      expires.focus();
      return;
    }
    busy(button, async () => {
      clear(slot);
      let jwk;
      try {
        jwk = await publicJwkFrom(text.value);
      } catch (error) {
        if (error instanceof KeyTextError) notify(slot, 'error', `The key was not added. ${error.message}`);
        else reportError(slot, 'The key was not added.', error);
        text.focus();
        return;
      }
      let added;
      try {
        added = await addKey(accountId, jwk, expiresAt);
      } catch (error) {
        reportError(slot, 'The key was not added.', error);
        return;
      }
      text.value = '';
      expires.value = '';
      notify(slot, 'ok', `The key was added with the key ID ${added.kid} (${added.alg}). Programs sign their `
        + 'client assertions with its private key and name this kid in the JWT header.');
      await refresh();
    });
  });

  const section = h('section', { class: 'card', id: 'keys-section' },
    h('h2', {}, 'Keys'),
    h('p', {}, 'A program can prove itself with a key pair instead of a secret (private_key_jwt): it keeps the '
      + 'private key and signs a short-lived assertion for each token request; this server holds only the public '
      + `key. At most ${LIVE_KEYS_MAX} keys work at once.`),
    slot, list, form);
  return { section, ready: load(settled(listKeys(accountId))) };
}

function federatedSection(accountId, account, onChange) {
  const slot = h('div', { class: 'slot', id: 'federated-slot' });
  const list = h('div', { class: 'credential-list' });
  const ours = issuer();

  function render(credentials) {
    if (!credentials.length) {
      fill(list, h('p', { class: 'muted', id: 'no-federated' }, 'This account has no federated credentials.'));
      return;
    }
    fill(list, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'federated' },
      h('thead', {}, h('tr', {},
        ['Name', 'Issuer', 'Subject', 'Audience', 'Created', 'Expires', 'Last used', '']
          .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, credentials.map(row)),
    )));
  }

  function row(c) {
    const what = `the federated credential \u201c${c.name}\u201d`;
    const remove = h('button', {
      type: 'button', class: 'btn btn-small', 'data-delete-federated': c.id, 'aria-label': `Delete ${what}`,
    }, 'Delete\u2026');
    remove.addEventListener('click', () => removeCredential({
      slot, button: remove, what,
      confirm: {
        title: 'Delete this federated credential?',
        text: [`Tokens of ${c.issuer} for the subject ${c.subject} no longer get \u201c${account().name}\u201d `
          + 'anything, from now on.', 'This cannot be undone.'],
        confirmLabel: 'Delete federated credential',
      },
      remove: () => deleteFederated(accountId, c.id),
      done: refresh,
    }));
    return h('tr', { 'data-federated-id': c.id, class: isExpired(c) ? 'expired' : null },
      h('td', { class: 'name' }, c.name),
      h('td', { class: 'issuer' }, breakable(c.issuer)),
      h('td', { class: 'subject-claim' }, breakable(c.subject)),
      h('td', { class: 'audience' }, breakable(c.audience),
        c.audience === ours ? h('span', { class: 'muted small note' }, ' (this server)') : null),
      h('td', { class: 'nowrap', title: c.createdBy ?? '' }, time(c.createdAt)),
      h('td', { class: 'nowrap expires' }, expiryCell(c)),
      h('td', { class: 'nowrap last-used' }, timeAgo(c.lastUsedAt, 'never')),
      h('td', { class: 'row-actions' }, remove),
    );
  }

  async function load(pending) {
    const credentials = await pending;
    if (Array.isArray(credentials)) {
      render(credentials);
      return;
    }
    fill(list);
    reportError(slot, 'The federated credentials could not be listed.', credentials.error);
  }

  async function refresh() {
    await Promise.all([load(settled(listFederated(accountId))), onChange()]);
  }

  const inputs = {
    name: h('input', { id: 'federated-name', name: 'name', autocomplete: 'off', placeholder: 'Deploys from main' }),
    issuer: h('input', { id: 'federated-issuer', name: 'issuer', autocomplete: 'off', spellcheck: 'false', placeholder: 'the issuer URL' }),
    subject: h('input', { id: 'federated-subject', name: 'subject', autocomplete: 'off', spellcheck: 'false' }),
    audience: h('input', {
      id: 'federated-audience', name: 'audience', autocomplete: 'off', spellcheck: 'false', placeholder: ours ?? '',
    }),
  };
  const expires = expiryInput('federated-expires');
  const hint = h('p', { class: 'help preset-hint', id: 'federated-hint', hidden: true });
  const presetButtons = Object.entries(PRESETS).map(([key, preset]) => {
    const button = h('button', { type: 'button', class: 'btn btn-small', id: `preset-${key}`, 'aria-controls': 'add-federated-form' },
      preset.label);
    button.addEventListener('click', () => applyPreset(preset));
    return button;
  });

  function applyPreset(preset) {
    const presetNames = Object.values(PRESETS).map((p) => p.name);
    if (!inputs.name.value.trim() || presetNames.includes(inputs.name.value.trim())) inputs.name.value = preset.name;
    inputs.issuer.value = preset.issuer;
    inputs.subject.value = preset.subject;
    fill(hint, preset.hint);
    hint.hidden = false;
    clear(slot);
    const target = inputs[preset.focus];
    target.focus();
    const at = target.value.indexOf(preset.select);
    if (at >= 0) target.setSelectionRange(at, at + preset.select.length);
  }

  const button = h('button', { type: 'submit', class: 'btn', id: 'add-federated' }, 'Add federated credential');
  const form = h('form', { class: 'form add-credential-form', id: 'add-federated-form', novalidate: true },
    h('h3', {}, 'Add a federated credential'),
    h('div', { class: 'presets' }, h('span', { class: 'muted' }, 'Start from:'), presetButtons),
    hint,
    field('Name', inputs.name, 'What runs with it, for people reading this list.'),
    field('Issuer', inputs.issuer, 'The URL the workload\u2019s tokens name as iss, exactly; an HTTPS address.'),
    field('Subject', inputs.subject, 'The tokens\u2019 sub claim, exactly.'),
    field('Audience (optional)', inputs.audience, ours
      ? `The aud the tokens must hold. Leave it empty for this server\u2019s issuer, ${ours}.`
      : 'The aud the tokens must hold. Leave it empty for this server\u2019s issuer.'),
    h('div', { class: 'add-credential-row' },
      field('Expires on (optional)', expires),
      h('div', { class: 'actions' }, button)),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, input.value.trim()]));
    const missing = ['name', 'issuer', 'subject'].find((k) => !values[k]);
    if (missing) {
      notify(slot, 'error', `The federated credential was not added. Fill in its ${missing}.`);
      inputs[missing].focus();
      return;
    }
    const left = templateLeft(values.subject);
    if (left) {
      notify(slot, 'error', `The federated credential was not added. Replace ${left} in the subject with your own.`);
      inputs.subject.focus();
      const at = inputs.subject.value.indexOf(left);
      inputs.subject.setSelectionRange(at, at + left.length);
      return;
    }
    const expiresAt = expiryValue(expires);
    if (expiresAt === undefined) {
      notify(slot, 'error', 'The federated credential was not added. Choose a day after today, or none.');
      expires.focus();
      return;
    }
    const body = { name: values.name, issuer: values.issuer, subject: values.subject };
    if (values.audience) body.audience = values.audience;
    if (expiresAt) body.expiresAt = expiresAt;
    busy(button, async () => {
      clear(slot);
      let added;
      try {
        added = await addFederated(accountId, body);
      } catch (error) {
        reportError(slot, 'The federated credential was not added.', error);
        return;
      }
      for (const input of Object.values(inputs)) input.value = '';
      expires.value = '';
      hint.hidden = true;
      notify(slot, 'ok', `The federated credential \u201c${added.name}\u201d was added. Tokens of ${added.issuer} `
        + `for ${added.subject} with the audience ${added.audience} now get tokens of this account; the issuer\u2019s `
        + 'keys are read at the first such request.');
      await refresh();
    });
  });

  const section = h('section', { class: 'card', id: 'federated-section' },
    h('h2', {}, 'Federated credentials'),
    h('p', {}, 'A CI job or a Kubernetes pod can trade the OIDC token its platform gives it for a token of this '
      + 'account: nothing secret is stored anywhere. A token is trusted when its issuer, subject and audience match '
      + `one of these exactly (at most ${LIVE_FEDERATED_MAX} at once).`),
    slot, list, form);
  return { section, ready: load(settled(listFederated(accountId))) };
}
