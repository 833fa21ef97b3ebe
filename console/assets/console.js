// The cdcaudit console: one page over the HTTP API of the same origin.
// Every piece of data is put into the page with textContent or attributes,
// never parsed as HTML. Credentials live in the HttpOnly session cookie;
// the page keeps only the CSRF token, in memory.
'use strict';

(() => {
  const API = '/api/v1';
  const PAGE = 50;

  let me = null; // {login, role, via, csrf}
  let afterSignIn = '#/activity';
  let cleanups = []; // what the current view must stop when it is left
  let renderSeq = 0;
  let signinMessage = ''; // shown once by the sign-in page
  // The sources (recorded databases) the principal sees, and the one read
  // when there are several: every request about the trail names it.
  let sources = [];
  let source = '';
  const SOURCE_KEY = 'cdcaudit.source';
  // The routes that read no source.
  const SOURCELESS = new Set(['/whoami', '/sources', '/signin', '/signout']);

  // ---------- DOM ----------

  // h makes an element: attrs may hold class, text, test (data-test), on
  // (event listeners) and any attribute; kids are nodes or strings.
  function h(tag, attrs, ...kids) {
    return build(document.createElement(tag), attrs, kids);
  }

  const SVGNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    return build(document.createElementNS(SVGNS, tag), attrs, kids);
  }

  function build(el, attrs, kids) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') el.textContent = String(v);
      else if (k === 'test') el.setAttribute('data-test', v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'class') el.setAttribute('class', v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    add(el, kids);
    return el;
  }

  function add(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.appendChild(typeof k === 'string' || typeof k === 'number' ? document.createTextNode(String(k)) : k);
    }
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function code(text) { return h('code', { text }); }

  // ---------- the API ----------

  class APIError extends Error {
    constructor(status, msg, body) { super(msg); this.status = status; this.body = body || {}; }
  }

  function qs(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v === undefined || v === null || v === '') continue;
      q.append(k, String(v));
    }
    const t = q.toString();
    return t ? '?' + t : '';
  }

  // url is the address of an API route, naming the source when there are
  // several to choose from.
  function url(path, params) {
    if (source && !SOURCELESS.has(path)) params = Object.assign({}, params, { source });
    return API + path + qs(params);
  }

  async function request(method, path, params, body) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    if (method !== 'GET' && me && me.csrf) headers['X-CSRF-Token'] = me.csrf;
    let res;
    try {
      res = await fetch(url(path, params), init);
    } catch (e) {
      throw new APIError(0, 'cdcaudit does not answer: is it still running?');
    }
    return res;
  }

  async function errorOf(res) {
    let body = {};
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    const msg = typeof body.error === 'string' ? body.error : res.status + ' ' + res.statusText;
    return new APIError(res.status, msg, body);
  }

  // get reads one JSON answer; a 401 means the session ended: back to sign-in.
  async function get(path, params) {
    const res = await request('GET', path, params);
    if (res.status === 401) {
      me = null;
      afterSignIn = location.hash && !location.hash.startsWith('#/signin') ? location.hash : afterSignIn;
      go('#/signin');
      throw new APIError(401, 'Your session has ended: sign in again.');
    }
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }

  // ---------- words and formats ----------

  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  const hourFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

  // when shows a time in the browser's zone, the UTC time on hover.
  function when(iso, test) {
    if (!iso) return h('span', { class: 'muted', text: '—' });
    const d = new Date(iso);
    if (isNaN(d)) return h('span', { text: iso });
    return h('time', { datetime: iso, title: utcText(iso), test }, dateFmt.format(d));
  }

  function utcText(iso) {
    return String(iso).replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC');
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    let sec = Math.max(0, Math.round(seconds));
    const d = Math.floor(sec / 86400); sec -= d * 86400;
    const hr = Math.floor(sec / 3600); sec -= hr * 3600;
    const m = Math.floor(sec / 60); sec -= m * 60;
    if (d) return d + ' d ' + hr + ' h';
    if (hr) return hr + ' h ' + m + ' min';
    if (m) return m + ' min';
    return sec + ' s';
  }

  const USER_VIA = {
    message: 'named by the application itself (a message it wrote in the same transaction)',
    session_row: 'from the login session the application recorded in the same transaction',
    row_user: 'from the record\'s own "created by" / "last updated by", stamped by the application in this transaction',
    tx_peer: 'from another record changed in the same transaction',
    none: 'not known',
  };
  const SESSION_VIA = {
    message: 'named by the application itself',
    same_tx: 'the session\'s activity was recorded in the same transaction',
    only_active: 'the user\'s only open session at the time',
    ambiguous: 'several sessions were open: which one cannot be told',
    none: 'not known',
  };
  const END_REASON = {
    revoked: 'logged out from another device (revoked)', deleted: 'session deleted', logged_out: 'logged out',
    expired: 'expired', password_changed: 'password changed',
  };
  const FLAG = {
    orm_bypass: 'changed outside the application',
    schema_migration: 'schema migration',
    truncate_cascade: 'truncate cascade',
    truncate_restart_identity: 'truncate restarted identities',
  };
  const OPS = ['insert', 'update', 'delete', 'truncate', 'snapshot'];

  function roleText(p) {
    if (p.role === 'self') return 'sees only their own';
    if (p.role === 'admin') return 'administrator';
    if (p.role === 'viewer') return 'auditor (reads everything)';
    return p.role;
  }

  // recordRef is TABLE:KEY as the API takes it (audit.ParseRecordRef).
  function quoteName(n) { return /[.:"]/.test(n) ? '"' + n.replace(/"/g, '""') + '"' : n; }
  function tableRef(ev) { return quoteName(ev.schema) + '.' + quoteName(ev.table); }
  function keyRef(key) {
    if (!key || typeof key !== 'object') return null;
    const names = Object.keys(key);
    if (names.length === 1) {
      const v = key[names[0]];
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
      if (typeof v === 'string' && v !== '' && !v.startsWith('{')) return v;
    }
    return JSON.stringify(key);
  }
  function historyHref(table, key) {
    return '#/records' + qs({ table, key });
  }
  function keyText(key) {
    if (!key) return '—';
    const names = Object.keys(key);
    if (names.length === 1) return names[0] + ' ' + valueText(key[names[0]]);
    return names.map((n) => n + '=' + valueText(key[n])).join(', ');
  }
  function valueText(v) {
    if (v === null) return 'null';
    if (typeof v === 'string') return v;
    return JSON.stringify(v);
  }

  // ---------- common pieces ----------

  function errorBox(err) {
    return h('p', { class: 'error', role: 'alert', test: 'error', text: err && err.message ? err.message : String(err) });
  }

  function empty(...kids) {
    return h('div', { class: 'empty', test: 'empty' }, ...kids);
  }

  function badge(text, cls, title) {
    return h('span', { class: 'badge ' + (cls || ''), title, text });
  }

  function opBadge(op) {
    return badge(op, 'op op-' + op);
  }

  function flagBadges(flags) {
    return (flags || []).map((f) => badge(FLAG[f] || f, f === 'orm_bypass' ? 'flag flag-bypass' : 'flag', f));
  }

  function userLink(login, id) {
    if (login) return h('a', { href: '#/users/' + encodeURIComponent(login), test: 'user-link', text: login });
    if (id !== null && id !== undefined) return h('span', { text: 'user #' + id });
    return h('span', { class: 'muted', text: 'unknown' });
  }

  function sessionLink(id) {
    if (!id) return h('span', { class: 'muted', text: 'none' });
    return h('a', { href: '#/sessions/' + encodeURIComponent(id), class: 'mono', title: id, test: 'session-link', text: id.slice(0, 9) + '…' });
  }

  const ICONS = {
    desktop: ['M3 4h18v12H3z', 'M8 20h8M12 16v4'],
    mobile: ['M7 2h10v20H7z', 'M11 18h2'],
    tablet: ['M4 3h16v18H4z', 'M11 18h2'],
    unknown: ['M4 4h16v16H4z', 'M9 9a3 3 0 1 1 4 3v2M12 17v.5'],
  };
  function deviceKind(device) {
    const d = (device || '').toLowerCase();
    if (d.startsWith('tablet')) return 'tablet';
    if (d.startsWith('mobile')) return 'mobile';
    if (d.startsWith('computer') || d.startsWith('desktop')) return 'desktop';
    return 'unknown';
  }
  function deviceIcon(device) {
    const kind = deviceKind(device);
    const label = device || 'unknown device';
    return h('span', { class: 'device', test: 'device', 'data-kind': kind },
      s('svg', { viewBox: '0 0 24 24', width: 18, height: 18, class: 'icon', role: 'img', 'aria-label': kind },
        s('title', { text: kind }), ICONS[kind].map((d) => s('path', { d }))),
      h('span', { text: label }));
  }

  function stateDot(sess) {
    const state = sess.state || 'ended';
    const words = [state];
    if (state === 'ended' && sess.end_reason) words.push('— ' + (END_REASON[sess.end_reason] || sess.end_reason));
    if (state === 'ended' && sess.ended_by_login) words.push('by ' + sess.ended_by_login);
    if (state === 'ended' && sess.end_inferred) words.push('(inferred)');
    return h('span', { class: 'state state-' + state, test: 'session-state', 'data-state': state },
      h('span', { class: 'dot', 'aria-hidden': 'true' }), words.join(' '));
  }

  // more adds a "Show more" button that loads the page after cursor.
  function moreButton(container, cursor, load) {
    if (!cursor) return null;
    const b = h('button', { type: 'button', class: 'more', test: 'more', text: 'Show more' });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await load(cursor);
        b.remove();
      } catch (e) {
        b.disabled = false;
        b.after(errorBox(e));
      }
    });
    container.appendChild(b);
    return b;
  }

  // A filter form: its values go to the hash, so a view is a link.
  function filterForm(test, fields, params, route) {
    const form = h('form', { class: 'filters', test, role: 'search' });
    for (const f of fields) {
      const id = 'f-' + test + '-' + f.name;
      let input;
      if (f.options) {
        input = h('select', { id, name: f.name },
          f.options.map(([v, label]) => h('option', { value: v, text: label, selected: (params[f.name] || '') === v })));
      } else {
        input = h('input', { id, name: f.name, type: f.type || 'text', placeholder: f.placeholder, value: f.type === 'datetime-local' ? toLocalInput(params[f.name]) : params[f.name] || '' });
      }
      form.appendChild(h('label', { for: id }, h('span', { text: f.label }), input));
    }
    form.appendChild(h('div', { class: 'actions' },
      h('button', { type: 'submit', test: test + '-apply', text: 'Apply' }),
      h('a', { href: route, class: 'button-link', text: 'Clear' })));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const p = {};
      for (const f of fields) {
        let v = form.elements[f.name].value.trim();
        if (v && f.type === 'datetime-local') v = new Date(v).toISOString();
        if (v) p[f.name] = v;
      }
      go(route + qs(p));
    });
    return form;
  }

  function toLocalInput(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const pad = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  }

  const EVENT_FILTERS = [
    { name: 'since', label: 'From', type: 'datetime-local' },
    { name: 'until', label: 'Until', type: 'datetime-local' },
    { name: 'table', label: 'Table', placeholder: 'sale_*, res_partner' },
    { name: 'op', label: 'Operation', options: [['', 'any']].concat(OPS.map((o) => [o, o])) },
    { name: 'user', label: 'User', placeholder: 'login or #id' },
    { name: 'session', label: 'Session', placeholder: 's…' },
    { name: 'record', label: 'Record', placeholder: 'sale_order:42' },
    { name: 'flag', label: 'Flag', options: [['', 'any'], ['orm_bypass', 'changed outside the application'], ['schema_migration', 'schema migration'], ['truncate_cascade', 'truncate cascade']] },
  ];
  function eventFilters(params) {
    const p = {};
    for (const f of EVENT_FILTERS) if (params[f.name]) p[f.name] = params[f.name];
    return p;
  }

  // ---------- events and their changes ----------

  function whoBlock(actor) {
    const a = actor || {};
    const userKnown = a.login || (a.user_id !== null && a.user_id !== undefined);
    const who = h('div', { class: 'who', test: 'event-who' },
      userKnown ? userLink(a.login, a.user_id) : h('span', { text: 'user not known' }),
      h('span', { class: 'how', test: 'user-via', 'data-via': a.user_via || 'none', text: userKnown ? 'how known: ' + (USER_VIA[a.user_via] || a.user_via || 'not known') : '' }));
    const sess = h('div', { class: 'who', test: 'event-session' },
      a.session_id ? [h('span', { class: 'label', text: 'session ' }), sessionLink(a.session_id)] : h('span', { class: 'label', text: a.session_via === 'ambiguous' ? 'session: ' : 'session not known' }),
      h('span', { class: 'how', test: 'session-via', 'data-via': a.session_via || 'none', text: a.session_id || a.session_via === 'ambiguous' ? (a.session_id ? 'how known: ' : '') + (SESSION_VIA[a.session_via] || a.session_via) : '' }));
    const c = a.candidates;
    let cand = null;
    if (c && ((c.users && c.users.length) || (c.sessions && c.sessions.length))) {
      cand = h('div', { class: 'candidates', test: 'candidates' },
        h('span', { text: 'Could have been (a lead, not a finding): ' }),
        (c.users || []).map((u, i) => [i ? ', ' : '', userLink(u.login, u.id)]),
        (c.sessions || []).length ? [' — sessions ', c.sessions.map((sid, i) => [i ? ', ' : '', sessionLink(sid)])] : null);
    }
    return [who, sess, cand];
  }

  // diff shows an event's row field by field, before → after.
  function diff(ev) {
    const wrap = h('div', { class: 'diff-wrap', test: 'diff' });
    if (ev.op === 'truncate') {
      wrap.appendChild(h('p', { text: 'The whole table was emptied (truncate): no row values are recorded.' }));
      return wrap;
    }
    const before = ev.before || null;
    const after = ev.after || null;
    const changed = ev.changed; // null: not known
    const redacted = new Set(ev.redacted || []);
    const toast = new Set(ev.unchanged_toast || []);
    const fields = [];
    for (const o of [after, before]) if (o) for (const k of Object.keys(o)) if (!fields.includes(k)) fields.push(k);
    for (const k of toast) if (!fields.includes(k)) fields.push(k);
    const notes = [];
    if (ev.before_source === 'unknown') notes.push('The old values are not known: the record was not seen since capture began, so the database sent only its key. Which fields changed cannot be told.');
    else if (ev.before_source === 'reconstructed') notes.push('Old values reconstructed by cdcaudit from the record\'s previous change.');
    if (ev.op === 'snapshot') notes.push('A snapshot record: the row as cdcaudit read it, not a change.');
    for (const n of notes) wrap.appendChild(h('p', { class: 'note', text: n }));
    const showBefore = ev.op === 'update' || ev.op === 'delete';
    const showAfter = ev.op !== 'delete';
    const table = h('table', { class: 'diff' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: 'Field' }),
        showBefore ? h('th', { scope: 'col', text: 'Before' }) : null,
        showAfter ? h('th', { scope: 'col', text: showBefore ? 'After' : 'Value' }) : null)));
    const body = h('tbody');
    // Changed fields first, so a long row shows what matters at the top.
    const isChanged = (f) => ev.op === 'update' && Array.isArray(changed) && changed.includes(f);
    const ordered = fields.filter(isChanged).concat(fields.filter((f) => !isChanged(f)));
    for (const f of ordered) {
      const ch = isChanged(f);
      const tr = h('tr', { class: ch ? 'changed' : null, test: 'diff-row', 'data-field': f, 'data-changed': ch ? 'true' : 'false' },
        h('th', { scope: 'row' }, h('span', { class: 'field', text: f }), ch ? h('span', { class: 'changed-mark', text: 'changed' }) : null));
      if (showBefore) tr.appendChild(h('td', { class: 'before', test: 'diff-before' }, valueCell(before, f, redacted, null)));
      if (showAfter) tr.appendChild(h('td', { class: 'after', test: 'diff-after' }, valueCell(after, f, redacted, toast)));
      body.appendChild(tr);
    }
    table.appendChild(body);
    wrap.appendChild(h('div', { class: 'scroll' }, table));
    return wrap;
  }

  function valueCell(row, f, redacted, toast) {
    if (toast && toast.has(f)) return h('span', { class: 'toast', test: 'value-toast', text: 'unchanged (large value)' });
    if (!row || !Object.prototype.hasOwnProperty.call(row, f)) return h('span', { class: 'muted', text: 'not known' });
    const v = row[f];
    if (redacted.has(f)) {
      const hmac = typeof v === 'string' && v.startsWith('hmac-sha256:');
      return h('span', { class: 'redacted', test: 'value-redacted', title: hmac ? 'kept as a keyed hash: equal values have equal hashes' : null },
        'redacted', hmac ? h('span', { class: 'muted', text: ' (hash …' + v.slice(-8) + ')' }) : null);
    }
    if (v === null) return h('span', { class: 'null', text: 'empty (null)' });
    return h('span', { class: 'value', text: valueText(v) });
  }

  // eventRow is one event of a list, with a button that unfolds its diff.
  function eventRow(ev, fresh) {
    const art = h('article', { class: 'event' + (fresh ? ' fresh' : ''), test: 'event', 'data-event': ev.id, 'data-op': ev.op });
    const key = keyRef(ev.key);
    const table = tableRef(ev);
    const recordCell = h('div', { class: 'record' },
      h('span', { class: 'table', text: ev.schema === 'public' ? ev.table : ev.schema + '.' + ev.table }),
      ev.model ? h('span', { class: 'muted', text: ' (' + ev.model + ')' }) : null,
      ' ',
      key !== null ? h('a', { href: historyHref(table, key), test: 'record-link', title: 'History of this record', text: keyText(ev.key) }) : null);
    const toggle = h('button', { type: 'button', class: 'expand', 'aria-expanded': 'false', test: 'event-expand', text: 'Show changes' });
    const detail = h('div', { class: 'event-detail', hidden: true });
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      toggle.textContent = open ? 'Hide changes' : 'Show changes';
      if (open && !detail.firstChild) detail.appendChild(diff(ev));
      detail.hidden = !open;
    });
    add(art, [
      h('div', { class: 'event-head' },
        h('div', { class: 'when' }, when(ev.commit_time)),
        h('div', { class: 'what' }, opBadge(ev.op), ' ', recordCell, ' ', flagBadges(ev.flags), changedSummary(ev)),
        h('div', { class: 'whos' }, whoBlock(ev.actor)),
        h('div', { class: 'event-actions' }, toggle,
          h('a', { href: '#/events/' + encodeURIComponent(ev.id), class: 'button-link', test: 'event-link', text: 'Open' }))),
      detail,
    ]);
    return art;
  }

  // changedSummary names an update's changed fields, the first few.
  function changedSummary(ev) {
    if (ev.op !== 'update') return null;
    if (!Array.isArray(ev.changed)) return h('div', { class: 'changed-list muted', text: 'changed fields not known' });
    const n = ev.changed.length;
    const shown = ev.changed.slice(0, 5).join(', ') + (n > 5 ? ' and ' + (n - 5) + ' more' : '');
    return h('div', { class: 'changed-list', test: 'changed-list' }, h('span', { class: 'muted', text: 'changed: ' }), shown || 'nothing');
  }

  // eventList pages through events with load(cursor) → {events, next_cursor}.
  async function eventList(container, load, emptyText) {
    const list = h('div', { class: 'events', test: 'events' });
    container.appendChild(list);
    const shown = new Set();
    const page = async (cursor) => {
      const p = await load(cursor);
      for (const ev of p.events || []) {
        if (shown.has(ev.id)) continue;
        shown.add(ev.id);
        list.appendChild(eventRow(ev));
      }
      if (!shown.size) list.appendChild(empty(emptyText));
      moreButton(container, p.next_cursor, page);
    };
    await page('');
    return {
      list,
      prepend(ev) {
        if (shown.has(ev.id)) return false;
        shown.add(ev.id);
        const e = list.querySelector('[data-test="empty"]');
        if (e) e.remove();
        list.insertBefore(eventRow(ev, true), list.firstChild);
        return true;
      },
    };
  }

  // ---------- views ----------

  const views = {};

  views.signin = async (main) => {
    if (me) return afterSigningIn();
    const message = signinMessage;
    signinMessage = '';
    document.getElementById('nav').hidden = true;
    document.getElementById('me').hidden = true;
    const err = h('p', { class: 'error', role: 'alert', test: 'signin-error', hidden: !message, text: message || '' });
    const login = h('input', { id: 'login', name: 'login', autocomplete: 'username', required: true, test: 'signin-login' });
    const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, test: 'signin-password' });
    const totp = h('input', { id: 'totp', name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9 ]*', maxlength: 8, test: 'signin-totp' });
    const totpHint = h('span', { class: 'hint', text: 'Only if two-factor authentication is on.' });
    const token = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, test: 'signin-token', placeholder: 'cdca_…' });
    const fail = (e) => { err.hidden = false; err.textContent = e.message; };
    const passForm = h('form', { class: 'card signin', test: 'signin-password-form' },
      h('h2', { text: 'Your application login' }),
      h('p', { class: 'muted', text: 'The login and password you use in the ERP.' }),
      h('label', { for: 'login' }, h('span', { text: 'Login' }), login),
      h('label', { for: 'password' }, h('span', { text: 'Password' }), password),
      h('label', { for: 'totp' }, h('span', { text: 'Two-factor code' }), totp, totpHint),
      h('button', { type: 'submit', test: 'signin-submit', text: 'Sign in' }));
    passForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      const body = { login: login.value, password: password.value };
      if (totp.value.trim()) body.totp = totp.value.trim();
      try {
        await signIn(body);
        afterSigningIn();
      } catch (ex) {
        if (ex.body && ex.body.totp_required) {
          totpHint.textContent = 'Enter the 6-digit code from your authenticator app.';
          totpHint.classList.add('ask');
          totp.focus();
        }
        password.value = '';
        fail(ex);
      }
    });
    const tokenForm = h('form', { class: 'card signin', test: 'signin-token-form' },
      h('h2', { text: 'An API token' }),
      h('p', { class: 'muted' }, 'A token made with ', code('cdcaudit token new'), '. It is sent once, to open a session of this browser; the page does not keep it.'),
      h('label', { for: 'token' }, h('span', { text: 'Token' }), token),
      h('button', { type: 'submit', test: 'signin-token-submit', text: 'Sign in with the token' }));
    tokenForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      err.hidden = true;
      const t = token.value.trim();
      token.value = '';
      try { await signIn({ token: t }); afterSigningIn(); } catch (ex) { fail(ex); }
    });
    add(main, [
      h('h1', { test: 'signin', text: 'Sign in to read the audit trail' }),
      err,
      h('div', { class: 'signin-forms' }, passForm, tokenForm),
    ]);
    login.focus();
  };

  async function signIn(body) {
    const res = await request('POST', '/signin', undefined, body);
    if (!res.ok) {
      if (res.status === 404 && body.login !== undefined) throw new APIError(404, 'Sign-in with an application login is not available here (no application profile): use an API token.');
      throw await errorOf(res);
    }
    const a = await res.json();
    me = { login: a.login || '', role: a.role, via: a.via || (body.token ? 'token' : body.once ? 'once' : 'password'), csrf: a.csrf_token };
    await loadSources();
    showMe();
  }

  function afterSigningIn() {
    go(afterSignIn.startsWith('#/signin') ? '#/activity' : afterSignIn);
  }

  // loadSources reads the sources the principal sees and picks the one
  // chosen before in this tab, or the first. With one, no request names it.
  async function loadSources() {
    sources = [];
    try {
      const res = await request('GET', '/sources');
      if (res.ok) sources = ((await res.json()).sources || []).filter((x) => x && typeof x.name === 'string');
    } catch (e) { /* an older daemon: one source */ }
    let kept = '';
    try { kept = sessionStorage.getItem(SOURCE_KEY) || ''; } catch (e) { /* storage off */ }
    source = sources.length > 1 ? (sources.some((x) => x.name === kept) ? kept : sources[0].name) : '';
  }

  // sourcePicker is the header's choice of source (none with one source).
  function sourcePicker() {
    if (sources.length < 2) return null;
    const select = h('select', { id: 'source', test: 'source-select', title: 'The recorded database every page shows' },
      sources.map((x) => h('option', { value: x.name, text: x.name === x.database || !x.database ? x.name : x.name + ' (' + x.database + ')', selected: x.name === source })));
    select.addEventListener('change', () => {
      source = select.value;
      try { sessionStorage.setItem(SOURCE_KEY, source); } catch (e) { /* storage off: kept for this page */ }
      render();
    });
    return h('span', { class: 'source-pick' },
      h('label', { for: 'source', text: 'Source' }), ' ', select);
  }

  function showMe() {
    const box = document.getElementById('me');
    clear(box);
    document.getElementById('nav').hidden = false;
    box.hidden = false;
    const name = me.login || (me.via || '').replace(/^token:/, 'token ') || me.role;
    add(box, [
      sourcePicker(),
      h('span', { class: 'who-me' },
        h('strong', { test: 'whoami-login', text: name }), ' ',
        h('span', { class: 'badge role', test: 'whoami-role', title: roleText(me), text: me.role === 'self' ? 'self' : me.role })),
      h('button', { type: 'button', class: 'linkish', test: 'signout', text: 'Sign out', on: { click: signOut } }),
    ]);
  }

  async function signOut() {
    try {
      await request('POST', '/signout');
    } finally {
      me = null;
      sources = [];
      source = '';
      afterSignIn = '#/activity';
      go('#/signin');
    }
  }

  // ----- sessions -----

  views.sessions = async (main, params) => {
    const fields = [
      me.role === 'self' ? null : { name: 'user', label: 'User', placeholder: 'login or #id' },
      { name: 'state', label: 'State', options: [['', 'any'], ['active', 'active'], ['idle', 'idle'], ['ended', 'ended']] },
      { name: 'since', label: 'Not ended before', type: 'datetime-local' },
      { name: 'until', label: 'Begun before', type: 'datetime-local' },
    ].filter(Boolean);
    const filter = {};
    for (const f of fields) if (params[f.name]) filter[f.name] = params[f.name];
    add(main, [
      h('h1', { text: 'Sessions' }),
      h('p', { class: 'muted', text: 'The application\'s login sessions, most recently active first. The list refreshes itself every 30 seconds.' }),
      filterForm('sessions-filter', fields, params, '#/sessions'),
    ]);
    const holder = h('div');
    main.appendChild(holder);
    const fill = async () => {
      const box = h('div');
      await sessionTable(box, (cursor) => get('/sessions', Object.assign({ limit: PAGE, cursor }, filter)),
        Object.keys(filter).length ? 'No session matches these filters.' : null);
      clear(holder).appendChild(box);
    };
    await fill();
    const timer = setInterval(() => {
      if (!holder.querySelector('[data-test="more"]:disabled') && holder.querySelectorAll('[data-test="session-row"]').length <= PAGE) fill().catch(() => {});
    }, 30000);
    cleanups.push(() => clearInterval(timer));
  };

  function noSessions() {
    return empty(h('p', { text: 'No sessions yet — is the application profile detected? See ' }, code('cdcaudit check'), '.'),
      h('p', { class: 'muted', text: 'Sessions appear here as people log in to the application.' }));
  }

  async function sessionTable(container, load, emptyText) {
    const cols = ['State', 'User', 'Device', 'Browser', 'OS', 'IP address', 'Location', 'Logged in', 'Last activity', 'Duration', 'Actions'];
    const tbody = h('tbody');
    const table = h('table', { class: 'list sessions', test: 'sessions-table' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', text: c })))), tbody);
    container.appendChild(h('div', { class: 'scroll' }, table));
    let n = 0;
    const page = async (cursor) => {
      const p = await load(cursor);
      for (const x of p.sessions || []) {
        n++;
        tbody.appendChild(sessionRow(x, cols));
      }
      if (!n) {
        table.hidden = true;
        container.appendChild(emptyText ? empty(emptyText) : noSessions());
      }
      moreButton(container, p.next_cursor, page);
    };
    await page('');
  }

  function sessionRow(x, cols) {
    const loc = [x.city, x.country].filter(Boolean).join(', ');
    const cells = [
      stateDot(x),
      userLink(x.login, x.user_id),
      deviceIcon(x.device),
      x.browser || '—',
      x.os || '—',
      h('span', { class: 'mono', text: x.ip || '—' }),
      loc || '—',
      when(x.first_activity),
      when(x.last_activity),
      duration(x.duration_seconds),
      [h('a', { href: '#/sessions/' + encodeURIComponent(x.id), class: 'button-link', test: 'session-open', text: 'Events' }), ' ',
        h('button', { type: 'button', disabled: true, test: 'session-terminate', title: 'Ending a session from here comes with session control (not yet available)', text: 'Terminate' })],
    ];
    return h('tr', { test: 'session-row', 'data-session': x.id, 'data-user': x.login || '' },
      cells.map((c, i) => h('td', { 'data-label': cols[i] }, h('div', {}, c))));
  }

  views.session = async (main, params, id) => {
    const p = await get('/sessions/' + encodeURIComponent(id), { order: 'desc', limit: PAGE });
    const x = p.session;
    const loc = [x.city, x.country].filter(Boolean).join(', ');
    add(main, [
      h('p', { class: 'crumbs' }, h('a', { href: '#/sessions', text: 'Sessions' }), ' › ', h('span', { class: 'mono', text: x.id })),
      h('h1', { test: 'session-title' }, 'Session of ', userLink(x.login, x.user_id)),
      dl([
        ['State', stateDot(x)],
        ['Device', deviceIcon(x.device)],
        ['Browser', x.browser || '—'], ['OS', x.os || '—'],
        ['IP address', h('span', { class: 'mono', text: x.ip || '—' })],
        ['Location', loc || '—'],
        ['Logged in', when(x.first_activity)], ['Last activity', when(x.last_activity)],
        ['Ended', when(x.ended)],
        ['Duration', duration(x.duration_seconds)],
        ['Terminate', h('button', { type: 'button', disabled: true, test: 'session-terminate', title: 'comes with session control', text: 'Terminate (not yet available)' })],
      ]),
      h('h2', { text: 'Changes made in this session' }),
    ]);
    let first = p;
    await eventList(main, async (cursor) => {
      if (first) { const f = first; first = null; return f; }
      return get('/sessions/' + encodeURIComponent(id), { order: 'desc', limit: PAGE, cursor });
    }, 'No change was attributed to this session.');
  };

  function dl(pairs) {
    return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
  }

  // ----- activity -----

  views.activity = async (main, params) => {
    const filter = eventFilters(params);
    const liveOK = !filter.until;
    const status = h('span', { class: 'live-status', test: 'live-status', role: 'status' });
    const pause = h('button', { type: 'button', test: 'live-pause', 'aria-pressed': 'false', text: 'Pause' });
    add(main, [
      h('h1', { text: 'Activity' }),
      h('p', { class: 'muted', text: 'Every change of the database, newest first.' }),
      filterForm('events-filter', EVENT_FILTERS.filter((f) => !(me.role === 'self' && f.name === 'user')), params, '#/activity'),
      liveOK ? h('div', { class: 'live' }, pause, ' ', status) : h('p', { class: 'muted', text: 'Live updates are off: the filter ends at a time.' }),
    ]);
    let list = null;
    let paused = false;
    const waiting = [];
    const showWaiting = () => {
      if (!list) return;
      while (waiting.length) list.prepend(waiting.shift());
    };
    const say = (text) => { status.textContent = text; };
    let es = null;
    if (liveOK) {
      es = new EventSource(url('/events/stream', filter), { withCredentials: false });
      cleanups.push(() => es.close());
      es.addEventListener('open', () => say(paused ? 'Paused.' : 'Live: new changes appear at the top.'));
      es.addEventListener('error', () => {
        const closed = es.readyState === EventSource.CLOSED;
        pause.disabled = closed;
        say(closed ? 'Live updates stopped: reload the page to try again.' : 'Reconnecting…');
        // A stream refused on reconnection may mean the session ended: if so, sign in again.
        if (closed) get('/whoami').catch(() => {});
      });
      es.addEventListener('audit', (m) => {
        let ev;
        try { ev = JSON.parse(m.data); } catch (e) { return; }
        waiting.push(ev);
        if (paused) say('Paused — ' + waiting.length + ' new change' + (waiting.length === 1 ? '' : 's') + ' waiting.');
        else showWaiting();
      });
      pause.addEventListener('click', () => {
        paused = !paused;
        pause.setAttribute('aria-pressed', String(paused));
        pause.textContent = paused ? 'Resume' : 'Pause';
        if (!paused) { showWaiting(); say('Live: new changes appear at the top.'); } else say('Paused — new changes wait here.');
      });
    }
    const hasFilter = Object.keys(filter).length > 0;
    list = await eventList(main, (cursor) => get('/events', Object.assign({ order: 'desc', limit: PAGE, cursor }, filter)),
      hasFilter ? 'No change matches these filters.' : h('span', {}, 'No change recorded yet. Changes appear here as the database is written; if nothing comes, see ', code('cdcaudit check'), ' and ', code('cdcaudit status'), '.'));
    if (!paused) showWaiting();
  };

  views.event = async (main, params, id) => {
    const ev = await get('/events/' + encodeURIComponent(id));
    const key = keyRef(ev.key);
    const a = ev.actor || {};
    add(main, [
      h('p', { class: 'crumbs' }, h('a', { href: '#/activity', text: 'Activity' }), ' › ', h('span', { class: 'mono', text: ev.id })),
      h('h1', { test: 'event-title' }, opBadge(ev.op), ' ', ev.schema + '.' + ev.table, ev.model ? ' (' + ev.model + ')' : ''),
      h('div', { class: 'flags' }, flagBadges(ev.flags)),
      (ev.flags || []).includes('orm_bypass') ? h('p', { class: 'warn', test: 'bypass-note', text: 'This change did not go through the application: someone wrote to the database directly (e.g. with SQL).' }) : null,
      dl([
        ['When', when(ev.commit_time)],
        ['Record', [keyText(ev.key), ' ', key !== null ? h('a', { href: historyHref(tableRef(ev), key), test: 'record-history-link', text: 'History of this record' }) : null]],
        ['Who', whoBlock(a)],
        ['Transaction', h('span', { class: 'mono', text: ev.xid + ' (commit ' + ev.commit_lsn + ')' })],
        ['Database', ev.database],
        ['Hash', h('span', { class: 'mono small', text: ev.hash })],
      ]),
      h('h2', { text: 'Changes' }),
      diff(ev),
    ]);
  };

  views.records = async (main, params) => {
    const table = params.table || '';
    const key = params.key || '';
    const record = table + ':' + key;
    add(main, [
      h('p', { class: 'crumbs' }, h('a', { href: '#/activity', text: 'Activity' }), ' › record history'),
      h('h1', { test: 'history-title' }, 'History of ', h('span', { class: 'mono', text: record })),
      h('p', { class: 'muted', text: 'Every change of this record, oldest first, followed through key changes, deletes and re-inserts.' }),
    ]);
    const ol = h('ol', { class: 'timeline', test: 'timeline' });
    main.appendChild(ol);
    let n = 0;
    const page = async (cursor) => {
      const p = await get('/records/history', { record, limit: PAGE, cursor });
      for (const ev of p.events || []) {
        n++;
        ol.appendChild(h('li', { test: 'history-item', 'data-event': ev.id }, eventRow(ev)));
      }
      if (!n) main.appendChild(empty('No change of this record is in the trail.'));
      moreButton(main, p.next_cursor, page);
    };
    await page('');
  };

  // ----- a user -----

  views.user = async (main, params, login) => {
    add(main, [
      h('p', { class: 'crumbs' }, h('a', { href: '#/sessions', text: 'Sessions' }), ' › user'),
      h('h1', { test: 'user-title', text: login }),
    ]);
    const facts = h('div');
    main.appendChild(facts);
    get('/users', { limit: 1000 }).then((p) => {
      const u = (p.users || []).find((x) => x.login === login);
      if (u) add(facts, dl([['User id', String(u.id)], ['Last activity', when(u.last_activity)], ['Open sessions', String(u.open_sessions)], ['Sessions', String(u.sessions)]]));
    }).catch(() => {});
    const sessions = h('section', { test: 'user-sessions' }, h('h2', { text: 'Sessions' }));
    const logins = h('section', { test: 'user-logins' }, h('h2', { text: 'Logins' }));
    const changes = h('section', { test: 'user-changes' }, h('h2', { text: 'Latest changes' }));
    add(main, [sessions, logins, changes]);
    await Promise.all([
      sessionTable(sessions, (cursor) => get('/sessions', { user: login, limit: 20, cursor }), 'No session of this user is known.'),
      (async () => {
        const p = await get('/events', { user: login, table: 'res_users_log', op: 'insert', order: 'desc', limit: 20 });
        const evs = p.events || [];
        if (!evs.length) { logins.appendChild(empty('No login recorded (the application notes each login in res_users_log).')); return; }
        logins.appendChild(h('ul', { class: 'logins' }, evs.map((ev) => h('li', { test: 'login' }, when(ev.commit_time), ' — session ', sessionLink((ev.actor || {}).session_id)))));
      })(),
      eventList(changes, (cursor) => get('/events', { user: login, order: 'desc', limit: 20, cursor }), 'No change by this user.'),
    ]);
  };

  // ----- the dashboard -----

  views.dashboard = async (main) => {
    add(main, [
      h('h1', { text: 'Dashboard' }),
      me.role === 'self' ? h('p', { class: 'muted', text: 'Your own activity only.' }) : null,
    ]);
    const grid = h('div', { class: 'charts' });
    main.appendChild(s('svg', { class: 'defs', width: 0, height: 0, 'aria-hidden': 'true', focusable: 'false' }, patterns()));
    main.appendChild(grid);
    const now = new Date();
    const [changes, logins, sessions, users, bypass] = await Promise.all([
      get('/summaries/changes'), get('/summaries/logins'), get('/summaries/sessions'),
      get('/summaries/users', { limit: 10 }), get('/summaries/orm-bypass', { bucket: 'day' }),
    ].map((p) => p.catch((e) => e)));

    grid.appendChild(chart('chart-changes-hour', 'Changes per hour, last 24 hours', changes, (c) => {
      const perHour = new Map();
      for (const r of c.changes || []) perHour.set(hourKey(r.hour), (perHour.get(hourKey(r.hour)) || 0) + r.count);
      const start = new Date(now.getTime() - 23 * 3600e3);
      start.setUTCMinutes(0, 0, 0);
      const bars = [];
      for (let i = 0; i < 24; i++) {
        const t = new Date(start.getTime() + i * 3600e3);
        bars.push({ label: hourFmt.format(t), title: dateFmt.format(t), value: perHour.get(t.toISOString().slice(0, 13)) || 0 });
      }
      return columns(bars, 'changes', 4);
    }));
    grid.appendChild(chart('chart-changes-table', 'Changes by table and operation, last 24 hours', changes, (c) => {
      const byTable = new Map();
      for (const r of c.changes || []) {
        const t = byTable.get(r.table) || { label: r.table, value: 0, parts: {} };
        t.value += r.count;
        t.parts[r.op] = (t.parts[r.op] || 0) + r.count;
        byTable.set(r.table, t);
      }
      const rows = [...byTable.values()].sort((a, b) => b.value - a.value).slice(0, 12);
      rows.forEach((r) => {
        r.segments = OPS.filter((o) => r.parts[o]).map((o) => ({ cls: 'seg-' + o, value: r.parts[o], name: o }));
        r.note = OPS.filter((o) => r.parts[o]).map((o) => o + ' ' + r.parts[o]).join(', ');
      });
      return [legend(OPS.slice(0, 4)), bars(rows)];
    }));
    grid.appendChild(chart('chart-logins', 'Logins per day, last 30 days', logins, (c) => {
      const per = new Map((c.logins || []).map((r) => [String(r.day).slice(0, 10), r.count]));
      const out = [];
      for (let i = 29; i >= 0; i--) {
        const d = new Date(now.getTime() - i * 86400e3);
        const k = d.toISOString().slice(0, 10);
        out.push({ label: dayFmt.format(d), title: k + ' (UTC day)', value: per.get(k) || 0 });
      }
      return columns(out, 'logins', 5);
    }));
    for (const [k, title] of [['browser', 'browser'], ['os', 'operating system'], ['device', 'device'], ['country', 'country']]) {
      grid.appendChild(chart('chart-sessions-' + k, 'Sessions by ' + title + ', last 30 days', sessions, (c) =>
        bars((c[k] || []).slice(0, 8).map((r) => ({ label: r.value || 'unknown', value: r.count })))));
    }
    grid.appendChild(chart('chart-users', 'Most active users, last 7 days (changes)', users, (c) => [
      bars((c.users || []).map((r) => ({ label: r.user, value: r.count, href: r.user && !r.user.startsWith('#') ? '#/users/' + encodeURIComponent(r.user) : null }))),
      c.unattributed ? h('p', { class: 'muted', text: c.unattributed + (c.unattributed === 1 ? ' change' : ' changes') + ' with no known user.' }) : null,
    ]));
    grid.appendChild(chart('chart-bypass', 'Changes outside the application, per day, last 30 days', bypass, (c) => {
      const per = new Map((c.series || []).map((r) => [String(r.at).slice(0, 10), r.count]));
      const out = [];
      for (let i = 29; i >= 0; i--) {
        const d = new Date(now.getTime() - i * 86400e3);
        const k = d.toISOString().slice(0, 10);
        out.push({ label: dayFmt.format(d), title: k + ' (UTC day)', value: per.get(k) || 0 });
      }
      return [h('p', { test: 'bypass-total' }, h('strong', { text: String(c.total || 0) }), ' in all — ',
        h('a', { href: '#/activity' + qs({ flag: 'orm_bypass' }), text: 'see them' })), columns(out, 'bypass', 5, 'bar-bypass')];
    }));
  };

  function hourKey(iso) { return new Date(iso).toISOString().slice(0, 13); }

  function chart(test, title, data, draw) {
    const fig = h('figure', { class: 'chart card', test });
    fig.appendChild(h('figcaption', { text: title }));
    if (data instanceof Error) fig.appendChild(errorBox(data));
    else {
      let body = draw(data);
      add(fig, [body]);
    }
    return fig;
  }

  function legend(ops) {
    return h('div', { class: 'legend', 'aria-hidden': 'true' }, ops.map((o) =>
      h('span', { class: 'legend-item' },
        s('svg', { width: 14, height: 14, viewBox: '0 0 14 14' }, s('rect', { width: 14, height: 14, class: 'seg-' + o })),
        ' ' + o)));
  }

  // patterns are the fills that tell the ops apart without colour.
  function patterns() {
    return s('defs', {},
      s('pattern', { id: 'p-update', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
        s('rect', { width: 6, height: 6, class: 'pat-bg-update' }), s('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'pat-line' })),
      s('pattern', { id: 'p-delete', width: 5, height: 5, patternUnits: 'userSpaceOnUse' },
        s('rect', { width: 5, height: 5, class: 'pat-bg-delete' }), s('circle', { cx: 2.5, cy: 2.5, r: 1.2, class: 'pat-dot' })),
      s('pattern', { id: 'p-truncate', width: 6, height: 6, patternUnits: 'userSpaceOnUse' },
        s('rect', { width: 6, height: 6, class: 'pat-bg-truncate' }), s('line', { x1: 0, y1: 3, x2: 6, y2: 3, class: 'pat-line' })));
  }

  function nothing(rows) { return !rows.length || rows.every((r) => !r.value); }

  // bars: horizontal bars, a label and the number written beside each.
  function bars(rows) {
    if (nothing(rows)) return empty('Nothing in this period.');
    const max = Math.max(...rows.map((r) => r.value));
    const W = 520, labelW = 150, rowH = 24, barMax = W - labelW - 70;
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + rows.length * rowH, class: 'bars', role: 'img', 'aria-label': rows.map((r) => r.label + ': ' + r.value).join('; ') });
    rows.forEach((r, i) => {
      const y = i * rowH;
      const label = s('text', { x: labelW - 8, y: y + 16, class: 'label', 'text-anchor': 'end' }, trim(r.label, 22));
      svg.appendChild(r.href ? s('a', { href: r.href }, label) : label);
      const w = Math.max(2, (r.value / max) * barMax);
      if (r.segments) {
        let x = labelW;
        for (const seg of r.segments) {
          const sw = (seg.value / r.value) * w;
          svg.appendChild(s('rect', { x, y: y + 4, width: sw, height: rowH - 8, class: seg.cls }, s('title', { text: r.label + ' — ' + seg.name + ': ' + seg.value })));
          x += sw;
        }
      } else {
        svg.appendChild(s('rect', { x: labelW, y: y + 4, width: w, height: rowH - 8, class: 'bar' }, s('title', { text: r.label + ': ' + r.value })));
      }
      svg.appendChild(s('text', { x: labelW + w + 6, y: y + 16, class: 'value' }, String(r.value)));
    });
    const out = [svg];
    if (rows.some((r) => r.note)) out.push(h('ul', { class: 'chart-notes' }, rows.map((r) => h('li', { text: r.label + ': ' + r.note }))));
    return out;
  }

  // columns: vertical bars over time, each value written above its bar.
  function columns(rows, what, labelEvery, cls) {
    if (nothing(rows)) return empty('Nothing in this period.');
    const max = Math.max(...rows.map((r) => r.value));
    const W = 520, H = 170, top = 16, bottom = 22, gap = 2;
    const bw = W / rows.length;
    const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'columns', role: 'img', 'aria-label': rows.filter((r) => r.value).map((r) => r.title + ': ' + r.value + ' ' + what).join('; ') });
    svg.appendChild(s('line', { x1: 0, y1: H - bottom, x2: W, y2: H - bottom, class: 'axis' }));
    rows.forEach((r, i) => {
      const x = i * bw;
      const bh = r.value ? Math.max(2, (r.value / max) * (H - top - bottom)) : 0;
      if (bh) {
        svg.appendChild(s('rect', { x: x + gap / 2, y: H - bottom - bh, width: bw - gap, height: bh, class: cls || 'bar' }, s('title', { text: r.title + ': ' + r.value + ' ' + what })));
        svg.appendChild(s('text', { x: x + bw / 2, y: H - bottom - bh - 3, class: 'value small', 'text-anchor': 'middle' }, String(r.value)));
      }
      if (i % labelEvery === 0) svg.appendChild(s('text', { x: i ? x + bw / 2 : 0, y: H - 6, class: 'tick', 'text-anchor': i ? 'middle' : 'start' }, r.label));
    });
    return svg;
  }

  function trim(t, n) { t = String(t); return t.length > n ? t.slice(0, n - 1) + '…' : t; }

  // ----- exports -----

  views.exports = async (main, params) => {
    const fields = EVENT_FILTERS.filter((f) => !(me.role === 'self' && f.name === 'user'));
    const form = h('form', { class: 'filters export-form', test: 'export-form' });
    for (const f of fields) {
      const id = 'x-' + f.name;
      const input = f.options
        ? h('select', { id, name: f.name }, f.options.map(([v, l]) => h('option', { value: v, text: l, selected: (params[f.name] || '') === v })))
        : h('input', { id, name: f.name, type: f.type || 'text', placeholder: f.placeholder, value: f.type === 'datetime-local' ? toLocalInput(params[f.name]) : params[f.name] || '' });
      form.appendChild(h('label', { for: id }, h('span', { text: f.label }), input));
    }
    form.appendChild(h('fieldset', { class: 'formats' }, h('legend', { text: 'Format' }),
      [['csv', 'CSV'], ['jsonl', 'JSON Lines'], ['xlsx', 'Excel (XLSX)']].map(([v, l], i) =>
        h('label', { class: 'radio' }, h('input', { type: 'radio', name: 'format', value: v, checked: i === 0, test: 'export-format-' + v }), ' ' + l))));
    const start = h('button', { type: 'submit', test: 'export-start', text: 'Export' });
    form.appendChild(h('div', { class: 'actions' }, start));
    const result = h('div', { class: 'export-result', test: 'export-result', 'aria-live': 'polite' });
    add(main, [
      h('h1', { text: 'Exports' }),
      h('p', { class: 'muted' }, 'Every change the filter selects, in commit order, with a manifest signed by this instance\'s key. Check a file with ',
        code('cdcaudit verify --export FILE --manifest FILE.manifest.json --public-key KEY'), '.'),
      form, result,
    ]);
    const urls = [];
    cleanups.push(() => urls.forEach((u) => URL.revokeObjectURL(u)));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const q = {};
      for (const f of fields) {
        let v = form.elements[f.name].value.trim();
        if (v && f.type === 'datetime-local') v = new Date(v).toISOString();
        if (v) q[f.name] = v;
      }
      q.format = form.elements.format.value;
      start.disabled = true;
      clear(result).appendChild(h('p', { test: 'export-running', text: 'Exporting…' }));
      try {
        add(clear(result), await runExport(q, urls));
      } catch (ex) {
        clear(result).appendChild(errorBox(ex));
      } finally {
        start.disabled = false;
      }
    });
  };

  async function runExport(q, urls) {
    const res = await request('GET', '/export', q);
    if (res.status === 401) { await get('/whoami'); }
    if (!res.ok) throw await errorOf(res);
    const id = res.headers.get('X-Cdcaudit-Export') || '';
    const cd = res.headers.get('Content-Disposition') || '';
    const m = /filename="?([A-Za-z0-9._-]+)"?/.exec(cd);
    const name = m ? m[1] : 'cdcaudit-export.' + q.format;
    const file = await res.blob();
    let manifest = null;
    for (let i = 0; i < 20 && !manifest; i++) {
      // The manifest is kept once the export's answer has ended: a moment after the body.
      const r = await request('GET', '/exports/' + encodeURIComponent(id) + '/manifest');
      if (r.ok) manifest = await r.blob();
      else if (r.status !== 404) throw await errorOf(r);
      else await new Promise((ok) => setTimeout(ok, 250));
    }
    const fileURL = URL.createObjectURL(file);
    urls.push(fileURL);
    const out = [h('p', {}, h('a', { href: fileURL, download: name, class: 'button-link download', test: 'export-file', text: 'Save ' + name + ' (' + size(file.size) + ')' }))];
    if (!manifest) {
      out.push(errorBox('The export has no manifest: it may have been cut off. Export again.'));
      return out;
    }
    const murl = URL.createObjectURL(manifest);
    urls.push(murl);
    out.push(h('p', {}, h('a', { href: murl, download: name + '.manifest.json', class: 'button-link download', test: 'export-manifest', text: 'Save its signed manifest' })));
    let mf = {};
    try { mf = JSON.parse(await manifest.text()); } catch (e) { /* shown as is */ }
    let check = null;
    if (window.crypto && crypto.subtle && mf.sha256) {
      const sum = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()))).map((b) => b.toString(16).padStart(2, '0')).join('');
      check = sum === mf.sha256 ? 'The file\'s SHA-256 matches its manifest.' : 'The file\'s SHA-256 does not match its manifest: export again.';
    }
    out.push(dl([
      mf.source && sources.length > 1 ? ['Source', h('span', { test: 'export-source', text: mf.source })] : null,
      ['Events', String(mf.events)], ['Bytes', String(mf.bytes)],
      ['SHA-256', h('span', { class: 'mono small', text: mf.sha256 || '' })],
      ['Signed by', h('span', { class: 'mono small', test: 'export-key', text: mf.key || '' })],
      ['Check', check || 'with cdcaudit verify (below)'],
    ]));
    out.push(h('p', { class: 'muted' }, 'To prove it: ', code('cdcaudit verify --export ' + name + ' --manifest ' + name + '.manifest.json --public-key ' + (mf.key || 'KEY'))));
    return out;
  }

  function size(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1048576).toFixed(1) + ' MB';
  }

  // ---------- routing ----------

  function go(hash) {
    if (location.hash === hash) render();
    else location.hash = hash;
  }

  function parseRoute() {
    const raw = location.hash.replace(/^#/, '') || '/activity';
    const [path, query] = raw.split('?');
    const params = Object.fromEntries(new URLSearchParams(query || ''));
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const r = { params, view: null, arg: null, nav: parts[0] || 'activity' };
    switch (parts[0] || 'activity') {
      case 'signin': r.view = 'signin'; break;
      case 'activity': r.view = 'activity'; break;
      case 'sessions': r.view = parts[1] ? 'session' : 'sessions'; r.arg = parts[1]; break;
      case 'events': r.view = 'event'; r.arg = parts[1]; r.nav = 'activity'; break;
      case 'records': r.view = 'records'; r.nav = 'activity'; break;
      case 'users': r.view = parts[1] ? 'user' : null; r.arg = parts[1]; r.nav = 'sessions'; break;
      case 'dashboard': r.view = 'dashboard'; break;
      case 'exports': r.view = 'exports'; break;
    }
    return r;
  }

  async function render() {
    const seq = ++renderSeq;
    for (const c of cleanups.splice(0)) { try { c(); } catch (e) { /* already gone */ } }
    const main = clear(document.getElementById('main'));
    main.removeAttribute('data-ready');
    const r = parseRoute();
    if (!me && r.view !== 'signin') {
      afterSignIn = location.hash || '#/activity';
      return go('#/signin');
    }
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.getAttribute('href') === '#/' + r.nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (!r.view) {
      main.appendChild(empty('There is no such page. ', h('a', { href: '#/activity', text: 'Go to the activity' }), '.'));
      return;
    }
    document.title = r.view + ' — cdcaudit';
    try {
      await views[r.view](main, r.params, r.arg);
    } catch (e) {
      if (seq === renderSeq && !(e instanceof APIError && e.status === 401)) main.appendChild(errorBox(e));
    }
    if (seq === renderSeq) main.setAttribute('data-ready', r.view);
  }

  async function start() {
    const m = /^#once=([A-Za-z0-9_-]{1,200})$/.exec(location.hash);
    if (m) {
      // The one-time code came in the fragment (never sent to a server);
      // it leaves the address bar before anything else happens.
      history.replaceState(null, '', location.pathname + location.search + '#/activity');
      try {
        await signIn({ once: m[1] });
      } catch (e) {
        signinMessage = 'The sign-in link did not work (' + e.message + '). A link is good once, for 10 minutes.';
        history.replaceState(null, '', location.pathname + location.search + '#/signin');
      }
      window.addEventListener('hashchange', render);
      return render();
    }
    try {
      const res = await request('GET', '/whoami');
      if (res.ok) {
        const a = await res.json();
        me = { login: a.login || '', role: a.role, via: a.via, csrf: a.csrf_token || '' };
        await loadSources();
        showMe();
      }
    } catch (e) { /* cannot reach: sign-in shows it */ }
    window.addEventListener('hashchange', render);
    render();
  }

  start();
})();
