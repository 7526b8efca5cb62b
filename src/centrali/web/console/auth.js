// Signing in: the console is the public OpenID Connect client "centrali-console" and uses
// the authorization-code flow with PKCE (RFC 7636, S256). Endpoint addresses come from the
// discovery document at run time.
//
// Where the tokens live: the access, refresh and ID tokens are kept in this module's
// variables only, never in sessionStorage, localStorage or a cookie. Anything in Web
// Storage can be read by any script that ever runs in this origin and outlives the page;
// a variable dies with it. The price is that a reload starts a new authorization: the
// provider's own sign-in cookie (HttpOnly, which no script can read) answers it without
// asking for the password again, so a reload costs one round trip of redirects.
// Only the short-lived PKCE verifier, state and nonce of a sign-in in progress go to
// sessionStorage, because they must survive the trip to the provider and back; they are
// removed when the callback arrives.

export const CLIENT_ID = 'centrali-console';
const PENDING_KEY = 'centrali.console.sign-in';
const PENDING_MAX_AGE_MS = 10 * 60 * 1000;
// Refresh this long before the access token expires, so an expired token is never sent.
const REFRESH_MARGIN_S = 60;

/** The server's root, from this module's own address: {root}/console/assets/{v}/auth.js. */
export const root = new URL('../../../', import.meta.url);

let config = null;
let session = null;
let refreshTimer = 0;
let refreshing = null;

/** A failure to show the user as is: its message is already a sentence. */
export class ConsoleError extends Error {}

/** The sign-in is over (refresh refused, or none possible): the user must sign in again. */
export class SessionEndedError extends ConsoleError {
  constructor(message = 'Your session has ended. Sign in again to continue.') {
    super(message);
  }
}

export async function loadConfig() {
  let response;
  try {
    response = await fetch(new URL('.well-known/openid-configuration', root), {
      headers: { Accept: 'application/json' },
      credentials: 'omit',
    });
  } catch {
    throw new ConsoleError('The server could not be reached. Check your connection and reload.');
  }
  if (!response.ok) {
    throw new ConsoleError(
      `The server's sign-in settings could not be read (HTTP ${response.status}). Reload to try again.`,
    );
  }
  config = await response.json();
  if (!config.authorization_endpoint || !config.token_endpoint) {
    throw new ConsoleError(
      'This server does not offer sign-in for people: its discovery document names no ' +
        'authorization endpoint.',
    );
  }
  return config;
}

/** Where the console lives: the issuer's /console, the base of the redirect URI. */
export function consoleBase() {
  return `${config.issuer.replace(/\/+$/, '')}/console`;
}

function redirectUri() {
  return `${consoleBase()}/callback`;
}

/** The server's issuer (its discovery document's), e.g. the default audience of workload tokens. */
export function issuer() {
  return config?.issuer ?? null;
}

/** True when this page is not on the issuer's origin (the redirect URI would not match). */
export function onForeignOrigin() {
  return new URL(config.issuer).origin !== window.location.origin;
}

export function signedIn() {
  return session !== null;
}

/** Who is signed in, for display: {subject, email, workspace}. */
export function currentUser() {
  if (!session) return null;
  return { subject: session.subject, email: session.email, workspace: session.workspace };
}

export function workspace() {
  if (!session) throw new SessionEndedError();
  return session.workspace;
}

// --- PKCE, state and nonce ------------------------------------------------------------

function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** The claims of a JWT, unverified: the console reads them, the API checks the signature. */
export function decodeJwt(token) {
  const part = String(token).split('.')[1];
  if (!part) throw new ConsoleError('The server answered with a malformed token.');
  const padded = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// --- the flow -------------------------------------------------------------------------

/** Leave for the provider's authorization endpoint; come back to ``returnTo`` afterwards. */
export async function startSignIn(returnTo) {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new ConsoleError(
      'The console needs a secure connection: open it over HTTPS (or on localhost).',
    );
  }
  const verifier = randomString(48);
  const state = randomString(24);
  const nonce = randomString(24);
  sessionStorage.setItem(
    PENDING_KEY,
    JSON.stringify({ state, nonce, verifier, returnTo, startedAt: Date.now() }),
  );
  const url = new URL(config.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectUri(),
    scope: 'openid',
    state,
    nonce,
    code_challenge: await pkceChallenge(verifier),
    code_challenge_method: 'S256',
  };
  // /console?workspace=SLUG picks the workspace of a user who belongs to several.
  const wanted = new URL(returnTo, window.location.href).searchParams.get('workspace');
  if (wanted) params.workspace = wanted;
  url.search = new URLSearchParams(params).toString();
  window.location.assign(url.toString());
}

/** On /console/callback: check the answer, trade the code for tokens; returns where to go. */
export async function completeSignIn() {
  const params = new URLSearchParams(window.location.search);
  const raw = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  const pending = raw ? JSON.parse(raw) : null;
  if (params.has('error')) {
    throw new ConsoleError(`Sign-in did not complete: ${oauthSentence(params.get('error'), params.get('error_description'))}`);
  }
  if (!pending || !params.get('state') || pending.state !== params.get('state')) {
    throw new ConsoleError(
      'This sign-in answer does not belong to a sign-in started in this tab. Sign in again.',
    );
  }
  if (Date.now() - pending.startedAt > PENDING_MAX_AGE_MS) {
    throw new ConsoleError('The sign-in took too long and has lapsed. Sign in again.');
  }
  const code = params.get('code');
  if (!code) throw new ConsoleError('The sign-in answer carries no code. Sign in again.');
  const tokens = await tokenRequest({
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri(),
    client_id: CLIENT_ID,
    code_verifier: pending.verifier,
  });
  const idClaims = checkIdToken(tokens.id_token, pending.nonce);
  adopt(tokens, idClaims);
  return pending.returnTo || consoleBase();
}

function checkIdToken(idToken, nonce) {
  if (!idToken) throw new ConsoleError('The server answered the sign-in without an ID token.');
  const claims = decodeJwt(idToken);
  const audiences = [claims.aud].flat();
  // Received straight from the token endpoint, so the signature need not be checked here
  // (OpenID Connect Core §3.1.3.7); the nonce ties the token to this sign-in.
  if (claims.nonce !== nonce || claims.iss !== config.issuer || !audiences.includes(CLIENT_ID)) {
    throw new ConsoleError('The sign-in answer failed its checks (issuer, audience or nonce). Sign in again.');
  }
  return claims;
}

function adopt(tokens, idClaims) {
  const claims = decodeJwt(tokens.access_token);
  if (!claims.workspace) {
    throw new ConsoleError('Your sign-in names no workspace, so there is nothing to manage.');
  }
  const lifetime = Number(tokens.expires_in) || Math.max(0, claims.exp - Date.now() / 1000);
  const refreshToken = tokens.refresh_token || session?.refreshToken || null;
  // Without a refresh token the sign-in simply ends a little before the token expires.
  const usable = refreshToken ? refreshDelay(lifetime) : Math.max(0, lifetime - 5);
  session = {
    accessToken: tokens.access_token,
    refreshToken,
    idToken: tokens.id_token || session?.idToken || null,
    refreshAt: Date.now() + usable * 1000,
    workspace: claims.workspace,
    subject: claims.sub,
    email: idClaims?.email || session?.email || null,
  };
  clearTimeout(refreshTimer);
  if (session.refreshToken) {
    // setTimeout's limit is 2^31-1 ms (24.8 days); a longer wait would fire at once. A
    // timer in a background tab may fire late: accessToken() checks refreshAt as well.
    const wait = Math.min(session.refreshAt - Date.now(), 2 ** 31 - 1);
    refreshTimer = setTimeout(() => refresh().catch(() => {}), wait);
  }
}

/** Seconds until a refresh: a minute before expiry, or at 80 % of a short lifetime. */
function refreshDelay(lifetime) {
  return Math.max(1, lifetime - Math.min(REFRESH_MARGIN_S, lifetime / 5));
}

/** A new access token from the refresh token (which the provider rotates); one at a time. */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      if (!session?.refreshToken) {
        session = null;
        throw new SessionEndedError();
      }
      try {
        const tokens = await tokenRequest({
          grant_type: 'refresh_token',
          refresh_token: session.refreshToken,
          client_id: CLIENT_ID,
        });
        adopt(tokens, tokens.id_token ? decodeJwt(tokens.id_token) : null);
      } catch (error) {
        if (error instanceof TokenEndpointError && error.status < 500) {
          session = null;
          clearTimeout(refreshTimer);
          throw new SessionEndedError();
        }
        throw error;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** The access token to send now, refreshed first when it is about to expire. */
export async function accessToken() {
  if (!session) throw new SessionEndedError();
  if (Date.now() >= session.refreshAt) await refresh();
  return session.accessToken;
}

class TokenEndpointError extends ConsoleError {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function tokenRequest(form) {
  let response;
  try {
    response = await fetch(config.token_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams(form),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ConsoleError('The server could not be reached. Check your connection and try again.');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok || !body?.access_token) {
    throw new TokenEndpointError(
      response.status,
      `Sign-in failed: ${oauthSentence(body?.error, body?.error_description, response.status)}`,
    );
  }
  return body;
}

/** An OAuth error code (RFC 6749 §4.1.2.1, §5.2) as a sentence. */
export function oauthSentence(code, description, status) {
  const known = {
    access_denied: 'access was denied.',
    login_required: 'you need to sign in.',
    invalid_grant: 'the sign-in code or session is no longer valid.',
    invalid_client: 'the console is not registered with this server.',
    invalid_request: 'the server refused the request as malformed.',
    unauthorized_client: 'the console may not sign in this way.',
    unsupported_response_type: 'the server does not support this way of signing in.',
    invalid_scope: 'the requested access is not allowed.',
    server_error: 'the server had a problem.',
    temporarily_unavailable: 'the server is busy; try again shortly.',
  };
  if (description) return sentence(description);
  if (code && known[code]) return known[code];
  if (status) return `the server answered with HTTP ${status}.`;
  return 'the server gave no reason.';
}

function sentence(text) {
  const trimmed = String(text).trim();
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

/** Shown in the header; best effort, never an error on the page. */
export async function loadUserInfo() {
  if (!session || !config.userinfo_endpoint) return currentUser();
  try {
    const response = await fetch(config.userinfo_endpoint, {
      headers: { Authorization: `Bearer ${await accessToken()}`, Accept: 'application/json' },
      credentials: 'omit',
    });
    if (response.ok) {
      const info = await response.json();
      if (info.email) session.email = info.email;
    }
  } catch {
    // The header then shows the subject instead of the e-mail address.
  }
  return currentUser();
}

/** Forget the tokens and end the provider's session too, when it offers a way. */
export function signOut() {
  const idToken = session?.idToken;
  session = null;
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(PENDING_KEY);
  const after = `${consoleBase()}/signed-out`;
  if (!config.end_session_endpoint) return after;
  const url = new URL(config.end_session_endpoint);
  const params = { client_id: CLIENT_ID, post_logout_redirect_uri: after };
  if (idToken) params.id_token_hint = idToken;
  url.search = new URLSearchParams(params).toString();
  window.location.assign(url.toString());
  return null;
}
