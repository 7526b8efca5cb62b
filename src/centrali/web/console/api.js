// The public management API, called with the signed-in user's access token: the console
// has no other way into the server than any other API client.

import { ConsoleError, SessionEndedError, accessToken, refresh, root, workspace } from './auth.js';

/** An answer of the API other than 2xx; ``message`` is a sentence for the page. */
export class ApiError extends ConsoleError {
  constructor(status, code, serverMessage, retryAfter) {
    super(apiSentence(status, code, serverMessage, retryAfter));
    this.status = status;
    this.code = code;
    this.serverMessage = serverMessage;
  }
}

function apiUrl(path, query) {
  const url = new URL(`workspace/${encodeURIComponent(workspace())}/api/v1${path}`, root);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value);
  }
  return url;
}

async function send(method, url, body) {
  const headers = { Authorization: `Bearer ${await accessToken()}`, Accept: 'application/json' };
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(url, init);
  } catch {
    throw new ConsoleError('The server could not be reached. Check your connection and try again.');
  }
}

/** ``method`` on /workspace/{slug}/api/v1{path}; the parsed answer, or null for 204. */
export async function call(method, path, { body, query } = {}) {
  const url = apiUrl(path, query);
  let response = await send(method, url, body);
  if (response.status === 401) {
    // The token check runs before anything else, so the request did nothing: refresh the
    // token once and try again. A second 401 means the sign-in itself is over.
    const first = await errorBody(response);
    if (first.error === 'token_revoked') throw new SessionEndedError();
    await refresh();
    response = await send(method, url, body);
    if (response.status === 401) throw new SessionEndedError();
  }
  if (response.status === 204) return null;
  if (!response.ok) {
    const { error, message } = await errorBody(response);
    throw new ApiError(response.status, error, message, response.headers.get('Retry-After'));
  }
  try {
    return await response.json();
  } catch {
    throw new ConsoleError('The server answered with something the console cannot read.');
  }
}

async function errorBody(response) {
  try {
    const body = await response.json();
    if (body && typeof body === 'object') {
      return {
        error: typeof body.error === 'string' ? body.error : null,
        message: typeof body.message === 'string' ? body.message : null,
      };
    }
  } catch {
    // Not JSON (a proxy's error page, say): the status alone speaks.
  }
  return { error: null, message: null };
}

function sentence(text) {
  const trimmed = String(text).trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/** The API's {error, message} as words a person reads: what happened and what to do. */
export function apiSentence(status, code, message, retryAfter) {
  switch (code) {
    case 'invalid_request':
      return message ? `The server did not accept this: ${lowerFirst(sentence(message))}` : 'The server did not accept this request.';
    case 'forbidden': {
      const reason = message ? message.replace(/^Forbidden:?\s*/i, '') : '';
      return reason
        ? `You are not allowed to do this: ${lowerFirst(sentence(reason))}`
        : 'You are not allowed to do this.';
    }
    case 'not_found':
      return message ? `${sentence(message)} It may have been deleted.` : 'Not found. It may have been deleted.';
    case 'conflict':
      return message ? sentence(message) : 'This conflicts with the current state. Reload and try again.';
    case 'payload_too_large':
      return 'That is too much text for the server. Shorten it and try again.';
    case 'unauthorized':
    case 'token_expired':
    case 'token_revoked':
      return 'Your session has ended. Sign in again to continue.';
    default:
      break;
  }
  if (status === 429) {
    const wait = Number(retryAfter);
    return wait > 0
      ? `Too many requests. Wait ${wait} second${wait === 1 ? '' : 's'} and try again.`
      : 'Too many requests. Wait a moment and try again.';
  }
  if (status >= 500) return `The server had a problem (HTTP ${status}). Try again in a moment.`;
  if (message) return sentence(message);
  return `The server refused the request (HTTP ${status}).`;
}

function lowerFirst(text) {
  // Keep identifiers such as "clientId" or an acronym as they are.
  if (/^[A-Z][a-z]/.test(text)) return text.charAt(0).toLowerCase() + text.slice(1);
  return text;
}

// --- the calls the console makes -------------------------------------------------------

const accounts = '/service-accounts';

export const listAccounts = (page, limit) => call('GET', accounts, { query: { page, limit } });
export const getAccount = (id) => call('GET', `${accounts}/${encodeURIComponent(id)}`);
export const createAccount = (body) => call('POST', accounts, { body });
export const renameAccount = (id, name) => call('PUT', `${accounts}/${id}/name`, { body: { name } });
export const describeAccount = (id, description) =>
  call('PUT', `${accounts}/${id}/description`, { body: { description } });
export const setAccountGroups = (id, groups) =>
  call('PUT', `${accounts}/${id}/groups`, { body: { groups } });
/** A new secret; the others stop at once, or after ``gracePeriodSeconds`` (0 = at once). */
export const rotateSecret = (id, { revokeTokens = false, gracePeriodSeconds = 0 } = {}) =>
  call('POST', `${accounts}/${id}/rotate`, { body: { revokeTokens, gracePeriodSeconds } });
export const listSecrets = (id) => call('GET', `${accounts}/${id}/secrets`);
/** One more secret for the account; ``expiresAt`` an ISO 8601 instant, or null for never. */
export const addSecret = (id, expiresAt) =>
  call('POST', `${accounts}/${id}/secrets`, { body: expiresAt ? { expiresAt } : {} });
export const deleteSecret = (id, secretId) =>
  call('DELETE', `${accounts}/${id}/secrets/${encodeURIComponent(secretId)}`);
export const listKeys = (id) => call('GET', `${accounts}/${id}/keys`);
/** Register a public JWK; ``expiresAt`` an ISO 8601 instant, or null for never. */
export const addKey = (id, jwk, expiresAt) =>
  call('POST', `${accounts}/${id}/keys`, { body: expiresAt ? { jwk, expiresAt } : { jwk } });
export const deleteKey = (id, kid) => call('DELETE', `${accounts}/${id}/keys/${encodeURIComponent(kid)}`);
export const listFederated = (id) => call('GET', `${accounts}/${id}/federated-credentials`);
/** Trust a workload's tokens: ``{name, issuer, subject, audience?, expiresAt?}``. */
export const addFederated = (id, body) => call('POST', `${accounts}/${id}/federated-credentials`, { body });
export const deleteFederated = (id, credentialId) =>
  call('DELETE', `${accounts}/${id}/federated-credentials/${encodeURIComponent(credentialId)}`);
export const revokeAccount = (id) => call('POST', `${accounts}/${id}/revoke`);
export const activateAccount = (id) => call('POST', `${accounts}/${id}/activate`);
export const deleteAccount = (id) => call('DELETE', `${accounts}/${id}`);
export const listAuditEvents = (query) => call('GET', '/audit-events', { query });
/** A page of accounts after the account ``after`` (keyset): ``{data, nextAfter}``. */
export const listAccountsAfter = (after, limit) => call('GET', accounts, { query: { after, limit } });
/** The workspace's members: ``{data: [{subject, email}]}``. */
export const listMembers = () => call('GET', '/members');
/** The workspace's groups: ``{data: [{name, permissions, isDefault}]}``. */
export const listGroups = () => call('GET', '/groups');
