// Building the page from nodes and text only: no HTML strings anywhere, so nothing the
// API returns can ever become markup (the CSP's Trusted Types would refuse it anyway).

/** An element: h('a', {href: '/x', class: 'btn'}, 'text', otherNode, [more, nodes]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'value') el.value = value;
    else if (key === 'checked') el.checked = Boolean(value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace everything inside ``el``. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** An instant as the page shows dates ("7 Dec 2026, 22:10"); the text itself if unreadable. */
export function dateText(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateFormat.format(date);
}

/** A <time> for an ISO 8601 instant, the exact value in its tooltip; a dash when absent. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h('span', {}, iso);
  return h('time', { datetime: iso, title: iso }, dateFormat.format(date));
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'always' });
const DAY_MS = 86_400_000;

/**
 * ``iso`` relative to ``now`` in words: "3 minutes ago", "in 5 days", "just now". Units
 * round up a step early (45 minutes is "1 hour"), as people say it.
 */
export function relativeText(iso, now = Date.now()) {
  const ms = new Date(iso).getTime() - now;
  const abs = Math.abs(ms);
  if (abs < 45_000) return ms < 0 ? 'just now' : 'in a few seconds';
  const [size, unit] = abs < 45 * 60_000 ? [60_000, 'minute']
    : abs < 22 * 3_600_000 ? [3_600_000, 'hour']
      : [DAY_MS, 'day'];
  return relativeFormat.format(Math.sign(ms) * Math.max(1, Math.round(abs / size)), unit);
}

/** Milliseconds from now until ``iso`` (negative when past); NaN when not a date. */
export function untilMs(iso, now = Date.now()) {
  return iso ? new Date(iso).getTime() - now : Number.NaN;
}

/**
 * A past instant (a last use) in words within ``withinDays`` ("2 hours ago"), else its date;
 * the exact value in its tooltip. ``none`` (a string) when absent.
 */
export function timeAgo(iso, none = '\u2014', withinDays = 30) {
  if (!iso) return h('span', { class: 'muted' }, none);
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h('span', {}, iso);
  // A use is never in the future: a server clock slightly ahead reads as "just now".
  const now = Math.max(Date.now(), date.getTime());
  const near = now - date.getTime() <= withinDays * DAY_MS;
  return h('time', { datetime: iso, title: dateFormat.format(date) },
    near ? relativeText(iso, now) : dateFormat.format(date));
}

/** A message box in ``slot``: kind 'error' (role=alert), 'ok' or 'info' (role=status). */
export function notify(slot, kind, text, ...extra) {
  fill(
    slot,
    h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      h('p', {}, text), extra),
  );
  return slot;
}

export function clear(slot) {
  slot.replaceChildren();
}

/**
 * A modal confirmation: resolves to the values of its form when confirmed, null when not.
 * ``fields`` are extra form controls (a checkbox, say) whose values are returned by name.
 */
export function confirmDialog({ title, text, confirmLabel, danger = false, fields = [] }) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', {}, title),
      [text].flat().map((line) => h('p', {}, line)),
      fields,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', value: 'cancel', class: 'btn' }, 'Cancel'),
        h('button', {
          type: 'submit', value: 'confirm', class: danger ? 'btn btn-danger' : 'btn btn-primary',
        }, confirmLabel),
      ),
    );
    const dialog = h('dialog', { class: 'dialog', 'aria-label': title }, form);
    dialog.addEventListener('close', () => {
      const values = Object.fromEntries(new FormData(form));
      dialog.remove();
      resolve(dialog.returnValue === 'confirm' ? values : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector('button[value="cancel"]').focus();
  });
}

/** Copy ``text``; where the Clipboard API is missing (plain HTTP), select ``input`` instead. */
export async function copyText(text, input) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return true;
  }
  if (input) {
    input.focus();
    input.select();
  }
  return false;
}

/** Group names from "a, b  c" (commas or spaces), without empties or repeats. */
export function parseList(text) {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}
