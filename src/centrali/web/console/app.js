// The console's entry point: sign in, then route between the pages in the browser.

import { accountPage, accountsPage, createPage } from './accounts.js';
import { ApiError } from './api.js';
import { auditPage } from './audit.js';
import {
  SessionEndedError,
  completeSignIn,
  consoleBase,
  currentUser,
  loadConfig,
  loadUserInfo,
  onForeignOrigin,
  signOut,
  startSignIn,
} from './auth.js';
import { fill, h } from './dom.js';
import { errorText, signInButton } from './views.js';

const TITLE = 'Centrali console';
const main = document.getElementById('main');
let basePath = '/console';
let renders = 0;
let flash = null;

const ROUTES = [
  { pattern: /^\/$/, page: accountsPage, nav: 'accounts' },
  { pattern: /^\/new$/, page: createPage, nav: 'accounts' },
  { pattern: /^\/accounts\/(\d+)$/, page: (ctx, id) => accountPage(ctx, Number(id)), nav: 'accounts' },
  { pattern: /^\/audit$/, page: auditPage, nav: 'audit' },
];

/** The console-relative path of this page: "/", "/accounts/3", "/callback". */
function routePath() {
  let path = window.location.pathname;
  if (path === basePath || path.startsWith(`${basePath}/`)) path = path.slice(basePath.length);
  return path.replace(/\/+$/, '') || '/';
}

function href(path) {
  return path === '/' ? basePath : `${basePath}${path}`;
}

/** Show ``url`` (same origin) without loading a new document. */
function go(url, { replace = false, flash: message = null } = {}) {
  flash = message;
  window.history[replace ? 'replaceState' : 'pushState'](null, '', url);
  render();
}

async function render() {
  const seq = ++renders;
  const path = routePath();
  const message = flash;
  flash = null;
  const route = ROUTES.find((r) => r.pattern.test(path));
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (route && link.dataset.nav === route.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const ctx = {
    path,
    query: new URLSearchParams(window.location.search),
    href,
    navigate: (to, options) => go(href(to), options),
    title: (text) => {
      document.title = `${text} \u00b7 ${TITLE}`;
    },
    autofocus: null,
  };
  document.body.classList.add('loading');
  main.setAttribute('aria-busy', 'true');
  let content;
  try {
    if (!route) {
      ctx.title('Page not found');
      content = [
        h('h1', {}, 'Page not found'),
        h('p', {}, 'The console has no page at this address.'),
        h('a', { href: href('/'), 'data-route': '' }, 'Go to the service accounts'),
      ];
    } else {
      content = await route.page(ctx, ...path.match(route.pattern).slice(1));
    }
  } catch (error) {
    ctx.title('Error');
    content = error instanceof ApiError && error.status === 403 ? refused(ctx, error) : [
      h('h1', {}, error instanceof SessionEndedError ? 'Signed out' : 'This page could not be shown'),
      h('div', { class: 'notice notice-error', role: 'alert' },
        h('p', {}, errorText(error)),
        error instanceof SessionEndedError ? signInButton() : null),
      route ? h('a', { href: href('/'), 'data-route': '' }, 'Go to the service accounts') : null,
    ];
  }
  if (seq !== renders) return; // a later navigation won
  document.body.classList.remove('loading');
  main.removeAttribute('aria-busy');
  fill(main, message ? flashNotice(message) : null, content);
  window.scrollTo(0, 0);
  (ctx.autofocus ?? main).focus({ preventScroll: ctx.autofocus === null });
}

/**
 * A page the server refused (403): why, what to ask for, and a link back to this same page
 * to try again once the permission is granted (every page needs the same one). The link
 * loads the page anew, so the sign-in is fresh: a token carries the groups of its sign-in.
 */
function refused(ctx, error) {
  ctx.title('Not allowed');
  const search = ctx.query.toString();
  return [
    h('h1', {}, 'You cannot see this page'),
    h('div', { class: 'notice notice-error', role: 'alert', id: 'refused' },
      h('p', {}, errorText(error)),
      h('p', {}, 'The console needs the permission service-accounts:manage in the workspace ',
        h('strong', {}, currentUser()?.workspace ?? ''),
        '. Ask a workspace administrator to add you to a group that has it (such as workspace-admins), '
        + 'then come back here: the console signs you in anew with your groups.')),
    h('p', {}, h('a', {
      href: `${href(ctx.path)}${search ? `?${search}` : ''}`, id: 'try-again', class: 'btn',
    }, 'Try this page again')),
  ];
}

function flashNotice([kind, text]) {
  return h('div', { class: `notice notice-${kind}`, role: 'status', id: 'flash' }, h('p', {}, text));
}

function followLinks() {
  document.addEventListener('click', (event) => {
    const link = event.target.closest('a[data-route]');
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    if (new URL(link.href).origin !== window.location.origin) return;
    event.preventDefault();
    go(link.href);
  });
  window.addEventListener('popstate', () => render());
}

async function showChrome() {
  for (const link of document.querySelectorAll('a[data-path]')) link.href = href(link.dataset.path);
  document.getElementById('nav').hidden = false;
  document.getElementById('who').hidden = false;
  const user = currentUser();
  const showUser = (u) => {
    document.getElementById('who-user').textContent = u.email || u.subject;
  };
  showUser(user);
  document.getElementById('who-workspace').textContent = user.workspace;
  document.getElementById('sign-out').addEventListener('click', () => {
    const next = signOut();
    if (next) showSignedOut(next);
  });
  loadUserInfo().then((u) => u && showUser(u));
}

function hideChrome() {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
}

function showSignedOut(url) {
  if (url) window.history.replaceState(null, '', url);
  hideChrome();
  document.title = `Signed out \u00b7 ${TITLE}`;
  fill(main,
    h('div', { class: 'center' },
      h('h1', {}, 'You are signed out'),
      h('p', {}, 'Sign in again to manage the workspace\u2019s service accounts.'),
      signInButton('Sign in')));
}

function showFatal(error, canRetry) {
  hideChrome();
  document.title = `Sign-in failed \u00b7 ${TITLE}`;
  fill(main,
    h('div', { class: 'center' },
      h('h1', {}, 'The console could not sign you in'),
      h('div', { class: 'notice notice-error', role: 'alert' }, h('p', {}, errorText(error))),
      canRetry ? signInButton('Sign in again') : null));
}

/** Only console pages are places to come back to after signing in. */
function safeReturn(target) {
  const url = new URL(target, window.location.href);
  const inside = url.pathname === basePath || url.pathname.startsWith(`${basePath}/`);
  const special = [`${basePath}/callback`, `${basePath}/signed-out`].includes(url.pathname);
  return url.origin === window.location.origin && inside && !special
    ? `${url.pathname}${url.search}`
    : basePath;
}

async function boot() {
  let configured = false;
  try {
    await loadConfig();
    configured = true;
    if (onForeignOrigin()) {
      // The redirect URI is on the issuer's origin: the console must run there.
      window.location.replace(consoleBase());
      return;
    }
    basePath = new URL(consoleBase()).pathname;
    const path = routePath();
    if (path === '/signed-out') {
      showSignedOut(null);
      return;
    }
    if (path !== '/callback') {
      // Nothing survives a reload (see auth.js): every fresh page load signs in anew.
      await startSignIn(safeReturn(window.location.href));
      return;
    }
    const target = await completeSignIn();
    window.history.replaceState(null, '', safeReturn(target));
    followLinks();
    await showChrome();
    await render();
  } catch (error) {
    showFatal(error, configured);
  }
}

boot();
