// Visage admin dashboard: a framework-free ES module.
//
// Security notes:
// - The API key exists only in the sign-in input and in the body of one
//   POST /admin/session; the server answers with an HttpOnly session cookie.
//   The key is never put in a URL, in Web Storage or in a JS-set cookie.
// - Every non-GET request carries the session's CSRF token in X-CSRF-Token.
// - Server data is rendered with textContent / createElement only (see h()),
//   never with innerHTML, and nothing inline is needed, so a strict CSP holds.

// Where a page load's time goes: the benchmark logs this mark beside view-ready.
performance.mark('visage:module-start');

const SESSION_PATH = '/admin/session';
const CHART_DAYS = 30;
const CHART_HOURS = 48;
/** How often a page with running imports refreshes them. */
const POLL_MS = 2000;
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = {
  /** The session JSON of /admin/session, or null when signed out. */
  session: null,
  /** The collections from GET /v1/collections: [{name, threshold, created_at}]. */
  collections: [],
  /** When the collections were loaded (ms since the epoch), 0 for never. */
  collectionsAt: 0,
};

/**
 * Incremented by every render and sign-out. An async view checks it after
 * awaiting so that a slow response cannot overwrite a newer page.
 */
let renderSeq = 0;

/** The one refresh timer (running imports), cleared by every render. */
let pollTimer = 0;

/** The object URL of the photo shown by "Try it", revoked when replaced or left. */
let tryImageURL = '';

// ---------------------------------------------------------------- DOM helpers

const $ = (selector, root = document) => root.querySelector(selector);
const enc = encodeURIComponent;

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else el.setAttribute(name, value === true ? '' : String(value));
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    // Strings become text nodes: server data can never turn into markup.
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Creates an HTML element: h('a', {href: '#/x'}, 'text', otherNode). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

/** Creates an SVG element (SVG needs its namespace). */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

function fragment(...children) {
  const frag = document.createDocumentFragment();
  appendChildren(frag, children);
  return frag;
}

/** Wraps a table so that it scrolls sideways on narrow screens (and by keyboard). */
function tableWrap(label, table) {
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': label, tabindex: 0 }, table);
}

/** A table with a visually hidden caption, column headers and rows. */
function dataTable(caption, headers, rows) {
  return h('table', { class: 'data' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, headers.map((col) => {
      const [text, cls] = Array.isArray(col) ? col : [col, null];
      return h('th', { scope: 'col', class: cls }, text);
    }))),
    h('tbody', {}, rows));
}

/** Sets a <select>'s value, adding the option first if it is not there. */
function selectValue(select, value) {
  if (value && ![...select.options].some((o) => o.value === value)) select.append(h('option', { value }, value));
  select.value = value || '';
}

/** A label above its control. */
function field(id, label, control, hint) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint ? h('p', { class: 'field-hint', id: `${id}-hint` }, hint) : null);
}

/**
 * Replaces a container's content without losing the reader's place: focus
 * inside it moves to the element at the same position in the new content,
 * and sideways-scrolled tables keep their scroll. Used by refreshes.
 */
function swapKeepingFocus(container, ...content) {
  const active = document.activeElement;
  const path = [];
  if (active && active !== container && container.contains(active)) {
    for (let n = active; n !== container; n = n.parentElement) {
      path.unshift(Array.prototype.indexOf.call(n.parentElement.children, n));
    }
  }
  const scrolls = [...container.querySelectorAll('.table-wrap')].map((w) => w.scrollLeft);
  container.replaceChildren(...content);
  container.querySelectorAll('.table-wrap').forEach((w, i) => { if (scrolls[i]) w.scrollLeft = scrolls[i]; });
  if (path.length) {
    let n = container;
    for (const i of path) n = n && n.children[i];
    if (n && typeof n.focus === 'function') n.focus();
  }
}

// ----------------------------------------------------------------- formatting

// Numbers and times are formatted by hand in the page's language, English
// ("12,345.67", local "2026-11-26 09:30"), not with Intl: a page's first Intl
// formatter loads ICU's locale data, 25-50 ms of every page load on the
// benchmark machine (docs/benchmarks.md), more than most pages' API calls.

/** n with at most maxDigits decimals (at least minDigits), thousands grouped by commas. */
function formatNumber(n, maxDigits, minDigits = 0) {
  const [whole, decimals = ''] = Math.abs(n).toFixed(maxDigits).split('.');
  const frac = decimals.replace(/0+$/, '').padEnd(minDigits, '0');
  const sign = n < 0 && /[1-9]/.test(whole + frac) ? '-' : '';
  return sign + whole.replace(/\B(?=(\d{3})+$)/g, ',') + (frac ? `.${frac}` : '');
}

const pad2 = (v) => String(v).padStart(2, '0');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

// Formatters, each with the format method of its Intl counterpart.
const intFormat = { format: (n) => formatNumber(n, 3) };
const decimalFormat = { format: (n) => formatNumber(n, 2) };
const thresholdFormat = { format: (n) => formatNumber(n, 4) };
const distanceFormat = { format: (n) => formatNumber(n, 3, 3) };
/** Local date and time to the minute: 2026-11-26 09:30. */
const dateTimeFormat = {
  format: (d) => `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`,
};
/** Local date and time to the second: 2026-11-26 09:30:05. */
const preciseFormat = { format: (d) => `${dateTimeFormat.format(d)}:${pad2(d.getSeconds())}` };
/** A UTC day as a chart label: Nov 26. */
const dayLabelFormat = { format: (d) => `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}` };

const isNumber = (n) => typeof n === 'number' && Number.isFinite(n);
const fmtInt = (n) => (isNumber(n) ? intFormat.format(n) : '—');
const fmtDecimal = (n) => (isNumber(n) ? decimalFormat.format(n) : '—');

/** A <time> in the browser's locale, keeping the exact value in datetime/title. */
function fmtTime(iso, empty = 'never', format = dateTimeFormat) {
  if (!iso) return h('span', { class: 'muted' }, empty);
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, format.format(date));
}

const dash = () => h('span', { class: 'muted' }, '—');
const fmtThreshold = (n) => (isNumber(n) ? thresholdFormat.format(n) : '—');
const fmtDistance = (n) => (isNumber(n) ? distanceFormat.format(n) : '—');
const asArray = (v) => (Array.isArray(v) ? v : []);

/** An id cut to 8 characters, the whole id in its tooltip. */
function shortId(id) {
  const s = String(id);
  return h('code', { title: s }, s.length > 12 ? s.slice(0, 8) : s);
}

/** Seconds as "45 s", "3 min 20 s", "2 h 5 min". */
function fmtDuration(secs) {
  if (!isNumber(secs) || secs < 0) return '—';
  const s = Math.round(secs);
  if (s < 1) return 'under 1 s';
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${intFormat.format(Math.floor(s / 3600))} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A byte count in B, KB, MB or GB (powers of 1024). */
function fmtSize(n) {
  if (!isNumber(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${decimalFormat.format(v)} ${units[u]}`;
}

function fmtBytes(n) {
  return isNumber(n) ? `${intFormat.format(n)} bytes` : '—';
}

function displayName(subject) {
  return subject.display_name || '(no display name)';
}

/** A face box [left, top, right, bottom] as "l, t → r, b (w×h)". */
function fmtBox(box) {
  if (!Array.isArray(box) || box.length !== 4) return box == null ? '—' : JSON.stringify(box);
  const [l, t, r, b] = box;
  return `${l}, ${t} → ${r}, ${b} (${r - l}×${b - t})`;
}

/** The quality object's keys and values as a compact list. */
function qualityList(quality) {
  if (!quality || typeof quality !== 'object') return h('span', { class: 'muted' }, '—');
  return h('ul', { class: 'quality' },
    Object.entries(quality).map(([key, value]) =>
      h('li', {},
        h('span', { class: 'q-key' }, key), ' ',
        h('span', { class: 'q-val' }, isNumber(value) ? fmtDecimal(value) : JSON.stringify(value)))));
}

// --------------------------------------------------------------------- status

function setStatus(message, kind = 'info') {
  const el = $('#status');
  el.dataset.kind = kind;
  el.textContent = message;
}

function clearStatus() {
  $('#status').textContent = '';
}

/** Reports a failed request; a 401 means the session expired, so sign in again. */
function reportError(err) {
  if (err && err.status === 401 && state.session) {
    endSession('Your session has expired. Please sign in again.', 'error');
    return;
  }
  setStatus(err && err.message ? err.message : String(err), 'error');
}

// ------------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, message, problem) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

async function readJSON(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * Calls the server with the session cookie. Resolves to the parsed JSON (null
 * for 204); rejects with an ApiError carrying the problem's detail or title.
 */
async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && state.session) headers['X-CSRF-Token'] = state.session.csrf_token;
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body instanceof FormData) {
    init.body = body; // the browser sets the multipart Content-Type with its boundary
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await send(path, init);
  if (res.status === 204) return null;
  const data = await readJSON(res);
  if (!res.ok) throw problemError(res, data);
  return data;
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, 'The server could not be reached. Check the connection and try again.');
  }
}

function problemError(res, data) {
  const message = (data && (data.detail || data.title)) || `Request failed (HTTP ${res.status}).`;
  return new ApiError(res.status, message, data);
}

/**
 * GETs a CSV with the session cookie and parses at most `maxRecords`
 * records (the header included), reading no more of the body than that.
 */
async function apiCSV(path, maxRecords) {
  const res = await send(path, { headers: { Accept: 'text/csv' }, credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw problemError(res, await readJSON(res));
  const parser = new CSVParser();
  if (res.body && typeof res.body.getReader === 'function') {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      if (parser.records.length >= maxRecords) {
        reader.cancel().catch(() => {});
        return parser.records.slice(0, maxRecords);
      }
    }
    parser.feed(decoder.decode());
  } else {
    parser.feed(await res.text());
  }
  parser.end();
  return parser.records.slice(0, maxRecords);
}

/**
 * An RFC 4180 CSV parser that can be fed in chunks: quoted fields may hold
 * commas, line breaks and doubled quotes; CRLF, LF and CR end records; a
 * leading BOM and blank lines are ignored. Parsed records collect in `records`.
 */
class CSVParser {
  constructor() {
    this.records = [];
    this.record = [];
    this.field = '';
    this.started = false; // the current record has begun
    this.quoted = false; // inside a quoted field
    this.quoteSeen = false; // a quote inside a quoted field: its end or half of ""
    this.afterCR = false; // a CR ended the record: a following LF belongs to it
    this.first = true;
  }

  feed(text) {
    for (const ch of text) {
      if (this.first) {
        this.first = false;
        if (ch === '\uFEFF') continue;
      }
      if (this.afterCR) {
        this.afterCR = false;
        if (ch === '\n') continue;
      }
      if (this.quoted) {
        if (this.quoteSeen) {
          this.quoteSeen = false;
          if (ch === '"') {
            this.field += '"';
            continue;
          }
          this.quoted = false; // the closing quote: read ch as unquoted text
        } else {
          if (ch === '"') this.quoteSeen = true;
          else this.field += ch;
          continue;
        }
      }
      this.unquoted(ch);
    }
  }

  unquoted(ch) {
    if (ch === ',') {
      this.record.push(this.field);
      this.field = '';
      this.started = true;
    } else if (ch === '\n' || ch === '\r') {
      this.endRecord();
      this.afterCR = ch === '\r';
    } else if (ch === '"' && this.field === '') {
      this.quoted = true;
      this.started = true;
    } else {
      this.field += ch;
      this.started = true;
    }
  }

  endRecord() {
    if (this.started) {
      this.record.push(this.field);
      this.records.push(this.record);
    }
    this.record = [];
    this.field = '';
    this.started = false;
  }

  end() {
    this.quoted = false;
    this.quoteSeen = false;
    this.endRecord();
  }
}

const collectionPath = (c) => `/v1/collections/${enc(c)}`;
const subjectPath = (c, id) => `${collectionPath(c)}/subjects/${enc(id)}`;

async function loadCollections() {
  setCollections(await api('/v1/collections'));
}

/** Takes a /v1/collections answer as the current list. */
function setCollections(data) {
  state.collections = (data && Array.isArray(data.collections)) ? data.collections : [];
  state.collectionsAt = Date.now();
  fillCollectionSelect();
}

/** Loads the collections unless they were loaded in the last two seconds (by sign-in, say). */
async function freshCollections() {
  if (!state.collectionsAt || Date.now() - state.collectionsAt > 2000) await loadCollections();
}

// -------------------------------------------------------------------- routing
// Routes: #/overview?c=<collection>, #/subjects?c=<collection>&q=<search>&after=<cursor>,
// #/subjects/<collection>/<subject id>. The selected collection lives in the
// hash (not in storage) so that links and the back button keep it.

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function parseRoute() {
  const raw = location.hash.replace(/^#/, '');
  const qi = raw.indexOf('?');
  const path = qi >= 0 ? raw.slice(0, qi) : raw;
  const params = new URLSearchParams(qi >= 0 ? raw.slice(qi + 1) : '');
  const parts = path.split('/').filter(Boolean).map(safeDecode);
  switch (parts[0]) {
    case 'subjects':
      if (parts.length >= 3) return { name: 'subject', collection: parts[1], id: parts[2], params };
      if (parts.length === 2 && !params.has('c')) params.set('c', parts[1]);
      return { name: 'subjects', params };
    case 'imports':
      if (parts.length >= 3) return { name: 'import', collection: parts[1], job: parts[2], params };
      if (parts.length === 2 && !params.has('c')) params.set('c', parts[1]);
      return { name: 'imports', params };
    case 'events':
    case 'keys':
    case 'try':
      return { name: parts[0], params };
    default:
      return { name: 'overview', params };
  }
}

function withQuery(path, values) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value) params.set(key, value);
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

const overviewHash = (c) => withQuery('#/overview', { c });
const subjectsHash = ({ c, q, after } = {}) => withQuery('#/subjects', { c, q, after });
const subjectHash = (c, id) => `#/subjects/${enc(c)}/${enc(id)}`;
const importsHash = (c) => withQuery('#/imports', { c });
const importHash = (c, job) => `#/imports/${enc(c)}/${enc(job)}`;
const tryHash = (c) => withQuery('#/try', { c });
/** The events page; the filters and the `before` cursor live in the hash. */
const eventsHash = ({ kind, key_id, collection, since, until, before } = {}) =>
  withQuery('#/events', { kind, key_id, collection, since, until, before });

/** Goes to a hash route; pushState does not fire hashchange, so render here. */
function navigate(hash, options) {
  if (location.hash !== hash) history.pushState(null, '', hash);
  render(options);
}

/** The collection to use: the wanted one if known, else the key's scope, else the first. */
function pickCollection(wanted) {
  const names = state.collections.map((c) => c.name);
  if (wanted && (names.length === 0 || names.includes(wanted))) return wanted;
  const scoped = state.session && state.session.collection;
  if (scoped && names.includes(scoped)) return scoped;
  return names[0] || '';
}

function fillCollectionSelect() {
  const select = $('#collection');
  const current = select.value;
  const names = state.collections.map((c) => c.name);
  select.replaceChildren(...names.map((name) => h('option', { value: name }, name)));
  if (names.length === 0) select.append(h('option', { value: '' }, 'No collections'));
  select.disabled = names.length === 0;
  if (names.includes(current)) select.value = current;
}

/** Shows the page's collection in the selector and keeps it in the nav links. */
function setCurrentCollection(c) {
  const select = $('#collection');
  if (c && state.collections.some((col) => col.name === c)) select.value = c;
  $('#nav-overview').href = overviewHash(c);
  $('#nav-subjects').href = subjectsHash({ c });
  $('#nav-imports').href = importsHash(c);
  $('#nav-try').href = tryHash(c);
}

/** The nav link of each route. */
const NAV_OF_ROUTE = {
  overview: 'overview', subjects: 'subjects', subject: 'subjects', events: 'events',
  imports: 'imports', import: 'imports', keys: 'keys', try: 'try',
};

function markNav(route) {
  const current = NAV_OF_ROUTE[route.name];
  for (const name of new Set(Object.values(NAV_OF_ROUTE))) {
    const link = $(`#nav-${name}`);
    if (name === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function onCollectionChange(event) {
  const c = event.target.value;
  const route = parseRoute();
  switch (route.name) {
    case 'overview': navigate(overviewHash(c)); break;
    case 'imports': case 'import': navigate(importsHash(c)); break;
    case 'try': navigate(tryHash(c)); break;
    // Events and keys span collections: only the other pages' links follow.
    case 'events': case 'keys': setCurrentCollection(c); break;
    default: navigate(subjectsHash({ c, q: route.name === 'subjects' ? route.params.get('q') : '' }));
  }
}

const VIEWS = {
  overview: viewOverview, subjects: viewSubjects, subject: viewSubject, events: viewEvents,
  imports: viewImports, import: viewImport, keys: viewKeys, try: viewTry,
};

const isAdminSession = () => !!state.session && state.session.role === 'admin';

/** The page of an admin-only route opened with a read key; no request is made. */
function adminsOnly(title) {
  return fragment(h('h1', { tabindex: -1 }, title),
    h('p', { class: 'notice admins-only' }, 'Admins only: this page needs an API key with the admin role.'));
}

/**
 * Refreshes part of the current page every POLL_MS: `load` fetches, then
 * `apply` updates the page and says whether to go on. It stops when the page
 * is left (render `seq` changed), on an error, or when `apply` returns false;
 * there is one timer at most. Hidden tabs skip the fetch but keep the timer.
 */
function poll(seq, load, apply) {
  stopPolling();
  pollTimer = setTimeout(async () => {
    pollTimer = 0;
    if (seq !== renderSeq || !state.session) return;
    let again = true;
    if (!document.hidden) {
      try {
        const data = await load();
        if (seq !== renderSeq || !state.session) return;
        again = apply(data) !== false;
      } catch (err) {
        if (seq !== renderSeq) return;
        reportError(err);
        again = false;
      }
    }
    if (again && seq === renderSeq && state.session) poll(seq, load, apply);
  }, POLL_MS);
}

function stopPolling() {
  clearTimeout(pollTimer);
  pollTimer = 0;
}

function releaseTryImage() {
  if (tryImageURL) URL.revokeObjectURL(tryImageURL);
  tryImageURL = '';
}

/**
 * Renders the current route into #view. Focus: if it was inside the view (or
 * lost), it goes back to the element with the same id, else to the new h1, so
 * keyboard users are not dropped at the top of the document; focus in the
 * header (nav, collection selector) is left alone.
 */
async function render({ keepStatus = false } = {}) {
  if (!state.session) return;
  const seq = ++renderSeq;
  const route = parseRoute();
  const view = $('#view');
  const active = document.activeElement;
  const focusInView = view.contains(active) || active === document.body || active === null;
  const focusId = view.contains(active) ? active.id : '';
  stopPolling();
  releaseTryImage();
  if (!keepStatus) clearStatus();
  markNav(route);
  view.setAttribute('aria-busy', 'true');
  view.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let content;
  try {
    content = await VIEWS[route.name](route);
  } catch (err) {
    if (seq !== renderSeq) return;
    content = fragment(h('h1', { tabindex: -1 }, 'Could not load this page'),
      h('p', { class: 'error' }, err && err.message ? err.message : String(err)));
    reportError(err);
  }
  if (seq !== renderSeq || !state.session) return;
  view.replaceChildren(content);
  view.removeAttribute('aria-busy');
  // Navigation start to the page drawn with its data: the benchmark reads it.
  performance.mark('visage:view-ready', { detail: route.name });
  const heading = $('h1', view);
  document.title = heading ? `${heading.textContent} · Visage admin` : 'Visage admin';
  if (focusInView) {
    const target = (focusId && document.getElementById(focusId)) || heading;
    if (target && view.contains(target)) target.focus();
  }
}

// ------------------------------------------------------------- overview view

async function viewOverview(route) {
  await freshCollections();
  const c = pickCollection(route.params.get('c'));
  setCurrentCollection(c);
  const heading = h('h1', { tabindex: -1 }, 'Overview');
  if (state.collections.length === 0) {
    return fragment(heading, h('p', {}, 'There are no collections yet.'));
  }
  // The figures and both charts' data are fetched at once.
  const charts = Promise.all([enrollmentsSection(c), identificationSections(c)]);
  const results = await Promise.allSettled(
    state.collections.map((col) => api(`${collectionPath(col.name)}/stats`)));
  const expired = results.find((r) => r.status === 'rejected' && r.reason && r.reason.status === 401);
  if (expired) throw expired.reason;
  const cards = state.collections.map((col, i) => collectionCard(col, results[i], col.name === c));
  const [chart, identifications] = await charts;
  return fragment(heading, h('div', { class: 'cards' }, cards), chart, identifications);
}

/** A collection's policy: "target FPIR 1%" or "fixed distance". */
function policyText(d) {
  if (!d) return '—';
  return d.policy === 'target_fpir' && isNumber(d.target_fpir) ? `target FPIR ${fmtShare(d.target_fpir)}` : 'fixed distance';
}

/** The collection's own estimate of its FPIR, from its strangers-by-proxy. */
function proxyText(d) {
  if (!d || !isNumber(d.proxy_fpir)) return '—';
  return `${fmtShare(d.proxy_fpir)} (est. at ${fmtInt(d.calibrated_subjects)} subjects)`;
}

/** A rate as a percentage with up to 2 significant decimals: 1%, 0.05%. */
function fmtShare(r) {
  if (!isNumber(r)) return '—';
  const pct = r * 100;
  if (pct === 0) return '0%';
  if (pct >= 1) return `${Math.round(pct * 10) / 10}%`;
  return `${Number(pct.toPrecision(2))}%`;
}

function statRow(label, className, value) {
  return [h('dt', {}, label), h('dd', { class: className }, value)];
}

function collectionCard(collection, result, selected) {
  const name = collection.name;
  const card = h('section', {
    class: selected ? 'collection-card selected' : 'collection-card',
    'data-collection': name,
    'aria-label': `Collection ${name}`,
  }, h('h2', {}, name));
  if (result.status === 'rejected') {
    card.append(h('p', { class: 'error' }, `Figures unavailable: ${result.reason.message}`));
  } else {
    const s = result.value || {};
    card.append(h('dl', { class: 'stats' },
      statRow('Subjects', 'stat-subjects', fmtInt(s.subjects)),
      statRow('Faces', 'stat-faces', fmtInt(s.faces)),
      statRow('Pending faces', 'stat-pending', fmtInt(s.pending_faces)),
      statRow('Decision', 'stat-policy', policyText(s.decision)),
      statRow('Threshold', 'stat-threshold', isNumber(s.threshold) ? thresholdFormat.format(s.threshold) : '—'),
      statRow('Strangers matched', 'stat-proxy-fpir', proxyText(s.decision)),
      statRow('Descriptors', 'stat-bytes', fmtBytes(s.descriptor_bytes)),
      statRow('Last enrollment', 'stat-last-enroll', fmtTime(s.last_enroll_at))));
  }
  card.append(h('a', { class: 'card-link', href: subjectsHash({ c: name }) }, `Subjects in ${name}`));
  return card;
}

/** The enrollments chart section; a 403 (read keys) shows "admins only" instead. */
async function enrollmentsSection(c) {
  const section = h('section', { class: 'panel chart-panel', 'aria-labelledby': 'chart-heading' },
    h('h2', { id: 'chart-heading' }, `Enrollments per day: ${c}`),
    h('p', { class: 'muted' }, `Faces enrolled in the last ${CHART_DAYS} days (UTC days).`));
  try {
    const data = await api(`/v1/admin/collections/${enc(c)}/enrollments?days=${CHART_DAYS}`);
    const series = daySeries(data || {}, CHART_DAYS);
    section.append(enrollmentChart(series, c), chartTable(series));
  } catch (err) {
    if (err.status === 401) throw err;
    if (err.status === 403) {
      section.append(h('p', { class: 'chart-note' }, 'Enrollments per day: admins only.'));
    } else {
      section.append(h('p', { class: 'error' }, `Enrollments unavailable: ${err.message}`));
    }
  }
  return section;
}

const DAY_MS = 86400000;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

/**
 * One {day, count} per UTC day from `since`: the API leaves out days without
 * enrollments, so the gaps are filled with zeros here.
 */
function daySeries(data, n) {
  const counts = new Map();
  for (const d of Array.isArray(data.days) ? data.days : []) {
    if (d && typeof d.day === 'string') counts.set(d.day.slice(0, 10), Number(d.count) || 0);
  }
  let start = typeof data.since === 'string' ? Date.parse(`${data.since.slice(0, 10)}T00:00:00Z`) : NaN;
  if (Number.isNaN(start)) {
    const now = new Date();
    start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - (n - 1) * DAY_MS;
  }
  return Array.from({ length: n }, (_, i) => {
    const day = isoDay(start + i * DAY_MS);
    return { day, count: counts.get(day) || 0 };
  });
}

/** A 1/2/5×10^k step so that the y axis gets about `parts` round ticks. */
function niceStep(max, parts = 4) {
  const raw = Math.max(max, 1) / parts;
  const pow = 10 ** Math.floor(Math.log10(raw));
  // Counts are whole numbers, so 2.5 only where it gives an integer (25, 250, …).
  const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw && Number.isInteger(s));
  return Math.max(1, step || 1);
}

/** The drawing's width: the viewport's, within bounds, so its text stays readable at 390 px. */
function chartWidth() {
  return Math.min(960, Math.max(340, document.documentElement.clientWidth - 48));
}

/**
 * An SVG chart with a y axis of round counts from 0 to at least `max`.
 * Returns the <svg>, its groups for bars and x-axis labels, and its geometry.
 */
function chartFrame({ id, label, max, height = 240, top: marginTop = 12 }) {
  const width = chartWidth();
  const m = { top: marginTop, right: 12, bottom: 30, left: 44 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const step = niceStep(max);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const y = (v) => m.top + plotH - (v / top) * plotH;
  const el = svg('svg', { id, class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label });
  const yAxis = svg('g', { class: 'axis y-axis' });
  for (let v = 0; v <= top; v += step) {
    yAxis.append(
      svg('line', { class: 'grid', x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }),
      svg('text', { class: 'tick-label', x: m.left - 6, y: y(v), 'text-anchor': 'end', 'dominant-baseline': 'middle' },
        intFormat.format(v)));
  }
  const bars = svg('g', { class: 'bars' });
  const xAxis = svg('g', { class: 'axis x-axis' },
    svg('line', { class: 'axis-line', x1: m.left, x2: width - m.right, y1: y(0), y2: y(0) }));
  el.append(yAxis, bars, xAxis);
  return { el, bars, xAxis, width, height, m, plotW, plotH, y };
}

/** One bar (class "bar", plus "zero" when empty) with its tooltip. */
function barRect(frame, x, w, value, title) {
  return svg('rect', {
    class: value ? 'bar' : 'bar zero', x: x.toFixed(1), y: frame.y(value).toFixed(1),
    width: w.toFixed(1), height: (frame.y(0) - frame.y(value)).toFixed(1),
  }, svg('title', {}, title));
}

function xTick(frame, x, text, anchor = 'middle') {
  return svg('text', { class: 'tick-label', x: x.toFixed(1), y: frame.height - 10, 'text-anchor': anchor }, text);
}

/** Evenly spaced bars: items [{value, title, tick}], tick being an x label or null. */
function columnChart({ id, label, items }) {
  const frame = chartFrame({ id, label, max: Math.max(0, ...items.map((d) => d.value)) });
  const slot = frame.plotW / Math.max(1, items.length);
  const barW = Math.max(2, slot * 0.72);
  items.forEach((d, i) => {
    const x = frame.m.left + i * slot + (slot - barW) / 2;
    frame.bars.append(barRect(frame, x, barW, d.value, d.title));
    if (d.tick) frame.xAxis.append(xTick(frame, x + barW / 2, d.tick));
  });
  return frame.el;
}

function enrollmentChart(series, c) {
  const max = Math.max(0, ...series.map((d) => d.count));
  const total = series.reduce((sum, d) => sum + d.count, 0);
  return columnChart({
    id: 'chart-enrollments',
    label: `Enrollments per day in ${c} over the last ${series.length} days: ` +
      `${intFormat.format(total)} in total, at most ${intFormat.format(max)} on one day.`,
    items: series.map((d, i) => ({
      value: d.count,
      title: `${d.day}: ${d.count}`,
      // Label weekly, counting back from the newest day so that today is labelled.
      tick: (series.length - 1 - i) % 7 === 0 ? dayLabelFormat.format(new Date(`${d.day}T00:00:00Z`)) : null,
    })),
  });
}

/** A chart's numbers as a table in a <details>, for screen readers and exact reading. */
function numbersTable(headers, rows, emptyText) {
  const body = rows.length
    ? h('table', { class: 'data' },
      h('thead', {}, h('tr', {}, headers.map(([text, cls]) => h('th', { scope: 'col', class: cls }, text)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map(([text, cls]) => h('td', { class: cls }, text))))))
    : h('p', { class: 'muted' }, emptyText);
  return h('details', { class: 'chart-data' }, h('summary', {}, 'Show the numbers'), body);
}

function chartTable(series) {
  return numbersTable([['Day (UTC)'], ['Faces enrolled', 'num']],
    series.filter((d) => d.count > 0).map((d) => [[d.day], [fmtInt(d.count), 'num']]),
    'No enrollments in this period.');
}

// ------------------------------------------------ overview: identifications

const HOUR_MS = 3600000;
/** An hour as "YYYY-MM-DD HH:00" (UTC). */
const isoHour = (ms) => `${new Date(ms).toISOString().slice(0, 13).replace('T', ' ')}:00`;

/**
 * Both identification charts from one request: per hour, and the distance of
 * each face's best candidate against the threshold. A 403 (read keys) shows
 * "admins only" in place of both.
 */
async function identificationSections(c) {
  const perHour = h('section', { class: 'panel chart-panel', 'aria-labelledby': 'chart-identifications-heading' },
    h('h2', { id: 'chart-identifications-heading' }, `Identifications per hour: ${c}`),
    h('p', { class: 'muted' }, `Identification requests in the last ${CHART_HOURS} hours (UTC hours).`));
  const distances = h('section', { class: 'panel chart-panel', 'aria-labelledby': 'chart-distances-heading' },
    h('h2', { id: 'chart-distances-heading' }, `Distance of the best candidate: ${c}`),
    h('p', { class: 'muted' }, 'How far each identified face was from its nearest subject (smaller is more alike). ' +
      'Faces left of the threshold line are matched; under a target FPIR the line is a typical face’s, and each face’s own ' +
      'depends on how close it and its candidate are to everyone else. A pile-up near the line means uncertain identifications.'));
  try {
    const data = (await api(`/v1/admin/collections/${enc(c)}/identifications?hours=${CHART_HOURS}`)) || {};
    const series = hourSeries(data, CHART_HOURS);
    perHour.append(
      h('p', { class: 'chart-summary' },
        `${fmtInt(data.identifications)} identifications, ${fmtInt(data.faces)} faces seen.`),
      identificationChart(series, c), hoursTable(series));
    const threshold = isNumber(data.threshold) ? data.threshold : collectionThreshold(c);
    const bins = distanceBins(data);
    distances.append(distanceChart(bins, threshold, data.bin_width, c), distancesTable(bins, data.bin_width));
  } catch (err) {
    if (err.status === 401) throw err;
    if (err.status === 403) {
      perHour.append(h('p', { class: 'chart-note' }, 'Identifications per hour: admins only.'));
      distances.append(h('p', { class: 'chart-note' }, 'Distance of the best candidate: admins only.'));
    } else {
      perHour.append(h('p', { class: 'error' }, `Identifications unavailable: ${err.message}`));
      distances.append(h('p', { class: 'error' }, `Distances unavailable: ${err.message}`));
    }
  }
  return [perHour, distances];
}

function collectionThreshold(c) {
  const col = state.collections.find((x) => x.name === c);
  return col && isNumber(col.threshold) ? col.threshold : NaN;
}

/**
 * One {t, hour, count} per UTC hour from `since` (on the hour): the API leaves
 * out hours without identifications, so the gaps are filled with zeros. Hours
 * the server counted past the expected window (an unaligned `since`) are kept.
 */
function hourSeries(data, n) {
  let start = typeof data.since === 'string' ? Date.parse(data.since) : NaN;
  if (Number.isNaN(start)) start = Date.now() - (n - 1) * HOUR_MS;
  start = Math.floor(start / HOUR_MS) * HOUR_MS;
  const counts = new Map();
  for (const d of asArray(data.hours)) {
    const t = d && typeof d.hour === 'string' ? Date.parse(d.hour) : NaN;
    if (Number.isNaN(t)) continue;
    const hour = Math.floor(t / HOUR_MS) * HOUR_MS;
    if (hour >= start && hour < start + 2 * n * HOUR_MS) counts.set(hour, (counts.get(hour) || 0) + (Number(d.count) || 0));
  }
  const last = Math.max(start + (n - 1) * HOUR_MS, ...counts.keys());
  return Array.from({ length: Math.round((last - start) / HOUR_MS) + 1 }, (_, i) => {
    const t = start + i * HOUR_MS;
    return { t, hour: isoHour(t), count: counts.get(t) || 0 };
  });
}

function identificationChart(series, c) {
  const max = Math.max(0, ...series.map((d) => d.count));
  const total = series.reduce((sum, d) => sum + d.count, 0);
  // Label every 3, 6, 12 or 24 hours: the smallest that leaves room for the text.
  const slot = (chartWidth() - 56) / series.length;
  const every = [3, 6, 12, 24].find((k) => slot * k >= 44) || 24;
  return columnChart({
    id: 'chart-identifications',
    label: `Identifications per hour in ${c} over the last ${series.length} hours: ` +
      `${intFormat.format(total)} in total, at most ${intFormat.format(max)} in one hour.`,
    items: series.map((d) => {
      const hour = new Date(d.t).getUTCHours();
      let tick = null;
      if (hour % every === 0) tick = hour === 0 ? dayLabelFormat.format(new Date(d.t)) : `${String(hour).padStart(2, '0')}:00`;
      return { value: d.count, title: `${d.hour}: ${d.count}`, tick };
    }),
  });
}

function hoursTable(series) {
  return numbersTable([['Hour (UTC)'], ['Identifications', 'num']],
    series.filter((d) => d.count > 0).map((d) => [[d.hour], [fmtInt(d.count), 'num']]),
    'No identifications in this period.');
}

/** The API's distance bins, valid ones only, in order. */
function distanceBins(data) {
  return asArray(data.distances)
    .filter((b) => b && isNumber(b.from) && isNumber(b.to) && b.to > b.from)
    .map((b) => ({ from: b.from, to: b.to, count: Number(b.count) || 0 }))
    .sort((a, b) => a.from - b.from);
}

/** Enough decimals for a bin edge: at least 2, more for finer bins. */
function binDecimals(binWidth) {
  const d = isNumber(binWidth) ? (String(binWidth).split('.')[1] || '').length : 2;
  return Math.min(4, Math.max(2, d));
}

/**
 * A histogram of best-candidate distances on a continuous x axis from 0, wide
 * enough to show the threshold as a vertical line (line.threshold).
 */
function distanceChart(bins, threshold, binWidth, c) {
  const decimals = binDecimals(binWidth);
  const total = bins.reduce((sum, b) => sum + b.count, 0);
  const width = isNumber(binWidth) && binWidth > 0 ? binWidth : 0.05;
  const xMax = Math.max(width, bins.length ? bins[bins.length - 1].to : 0, isNumber(threshold) ? threshold + width : 0);
  const frame = chartFrame({
    id: 'chart-distances',
    label: `Distance of the best candidate of ${intFormat.format(total)} identified faces in ${c}, ` +
      `in bins of ${width}; threshold ${fmtThreshold(threshold)}.`,
    max: Math.max(0, ...bins.map((b) => b.count)),
    height: 256,
    top: 28, // room for the threshold's label above the bars
  });
  const x = (v) => frame.m.left + (v / xMax) * frame.plotW;
  for (const b of bins) {
    const x0 = x(b.from) + 0.5;
    frame.bars.append(barRect(frame, x0, Math.max(1, x(b.to) - 0.5 - x0), b.count,
      `${b.from.toFixed(decimals)}–${b.to.toFixed(decimals)}: ${b.count}`));
  }
  // Round distance labels, at least 44 px apart.
  const step = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2].find((s) => (s / xMax) * frame.plotW >= 44) || 2;
  for (let i = 0; i * step <= xMax + 1e-9; i++) {
    frame.xAxis.append(xTick(frame, x(i * step), (i * step).toFixed(step < 0.1 ? 2 : step < 1 ? 1 : 0)));
  }
  if (isNumber(threshold)) {
    const tx = x(threshold);
    // The label sits above the plot, centred on the line unless that runs past an edge.
    const half = 55;
    const anchor = tx < frame.m.left + half ? 'start' : tx > frame.width - half ? 'end' : 'middle';
    frame.el.append(svg('g', { class: 'threshold-marker' },
      svg('line', { class: 'threshold', x1: tx.toFixed(1), x2: tx.toFixed(1), y1: frame.m.top - 8, y2: frame.y(0) },
        svg('title', {}, `threshold ${fmtThreshold(threshold)}`)),
      svg('text', { class: 'threshold-label', x: tx.toFixed(1), y: 13, 'text-anchor': anchor },
        `threshold ${fmtThreshold(threshold)}`)));
  }
  if (!bins.length) {
    frame.el.append(svg('text', { class: 'chart-empty', x: frame.width / 2, y: frame.m.top + frame.plotH / 2,
      'text-anchor': 'middle' }, 'No identifications in this period'));
  }
  return frame.el;
}

function distancesTable(bins, binWidth) {
  const decimals = binDecimals(binWidth);
  return numbersTable([['From'], ['To'], ['Faces', 'num']],
    bins.map((b) => [[b.from.toFixed(decimals)], [b.to.toFixed(decimals)], [fmtInt(b.count), 'num']]),
    'No identifications in this period.');
}

// ------------------------------------------------------------- subjects view

async function viewSubjects(route) {
  if (state.collections.length === 0) await loadCollections();
  const c = pickCollection(route.params.get('c'));
  setCurrentCollection(c);
  const heading = h('h1', { tabindex: -1 }, 'Subjects');
  if (!c) return fragment(heading, h('p', {}, 'There are no collections yet.'));

  const q = route.params.get('q') || '';
  const after = route.params.get('after') || '';
  const data = await api(withQuery(`${collectionPath(c)}/subjects`, { q, after }));
  const subjects = (data && Array.isArray(data.subjects)) ? data.subjects : [];
  const next = (data && data.next) || '';

  return fragment(
    heading,
    h('p', { class: 'muted' }, `Collection ${c}`),
    searchForm(c, q),
    subjects.length
      ? subjectsTable(c, subjects)
      : h('p', { class: 'empty' }, q ? `No subjects match “${q}”.` : 'No subjects on this page.'),
    pager(c, q, after, next, subjects.length));
}

function searchForm(c, q) {
  const input = h('input', { id: 'subject-search', name: 'q', type: 'search', autocomplete: 'off' });
  input.value = q;
  const form = h('form', { class: 'search', role: 'search' },
    h('label', { for: 'subject-search' }, 'Search by name or external id'),
    h('div', { class: 'search-row' }, input, h('button', { id: 'subject-search-submit', type: 'submit' }, 'Search')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    navigate(subjectsHash({ c, q: input.value.trim() }));
  });
  return form;
}

function subjectsTable(c, subjects) {
  const rows = subjects.map((s) => h('tr', {
    class: 'subject-row', 'data-subject-id': s.id, 'data-external-id': s.external_id,
  },
  h('th', { scope: 'row' }, h('a', { href: subjectHash(c, s.id), class: s.display_name ? null : 'unnamed' }, displayName(s))),
  h('td', {}, h('code', {}, s.external_id)),
  h('td', { class: 'num' }, fmtInt(s.face_count)),
  h('td', { class: 'nowrap' }, fmtTime(s.created_at, '—'))));
  const table = h('table', { class: 'data' },
    h('caption', { class: 'visually-hidden' }, `Subjects in ${c}`),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Display name'),
      h('th', { scope: 'col' }, 'External id'),
      h('th', { scope: 'col', class: 'num' }, 'Faces'),
      h('th', { scope: 'col' }, 'Created'))),
    h('tbody', {}, rows));
  return tableWrap(`Subjects in ${c}`, table);
}

/** Cursor paging: "Next" follows the API's `next`; "First" drops the cursor. */
function pager(c, q, after, next, count) {
  const nav = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('span', { class: 'muted' }, `${fmtInt(count)} ${count === 1 ? 'subject' : 'subjects'} on this page`));
  if (after) {
    nav.append(h('button', { id: 'first-page', type: 'button', class: 'secondary',
      onclick: () => navigate(subjectsHash({ c, q })) }, 'First page'));
  }
  if (next) {
    nav.append(h('button', { id: 'next-page', type: 'button',
      onclick: () => navigate(subjectsHash({ c, q, after: next })) }, 'Next page'));
  }
  return nav;
}

// -------------------------------------------------------------- subject view

async function viewSubject(route) {
  if (state.collections.length === 0) await loadCollections();
  const { collection: c, id } = route;
  setCurrentCollection(c);
  const [subject, faceList] = await Promise.all([
    api(subjectPath(c, id)),
    api(`${subjectPath(c, id)}/faces`),
  ]);
  const faces = (faceList && Array.isArray(faceList.faces)) ? faceList.faces : [];
  const isAdmin = state.session.role === 'admin';

  return fragment(
    h('p', {}, h('a', { class: 'back', href: subjectsHash({ c }) }, '← All subjects')),
    h('div', { class: 'title-row' },
      h('h1', { tabindex: -1 }, displayName(subject)),
      isAdmin ? h('button', { id: 'delete-subject', type: 'button', class: 'danger',
        onclick: (e) => deleteSubject(e.currentTarget, c, subject, faces.length) }, 'Delete subject') : null),
    h('dl', { class: 'details' },
      h('dt', {}, 'External id'), h('dd', {}, h('code', {}, subject.external_id)),
      h('dt', {}, 'Subject id'), h('dd', {}, h('code', {}, subject.id)),
      h('dt', {}, 'Collection'), h('dd', {}, subject.collection || c),
      h('dt', {}, 'Faces'), h('dd', {}, fmtInt(subject.face_count)),
      h('dt', {}, 'Created'), h('dd', {}, fmtTime(subject.created_at, '—')),
      h('dt', {}, 'Updated'), h('dd', {}, fmtTime(subject.updated_at, '—'))),
    h('section', { class: 'panel', 'aria-labelledby': 'metadata-heading' },
      h('h2', { id: 'metadata-heading' }, 'Metadata'),
      h('pre', { class: 'metadata', tabindex: 0 }, JSON.stringify(subject.metadata ?? {}, null, 2))),
    h('section', { class: 'panel', 'aria-labelledby': 'faces-heading' },
      h('h2', { id: 'faces-heading' }, `Faces (${fmtInt(faces.length)})`),
      faces.length ? facesTable(c, subject, faces, isAdmin) : h('p', { class: 'empty' }, 'No faces enrolled.')));
}

function facesTable(c, subject, faces, isAdmin) {
  const rows = faces.map((f) => h('tr', { class: 'face-row', 'data-face-id': f.id },
    h('td', { class: 'nowrap' }, h('code', { title: f.id }, String(f.id).slice(0, 8))),
    h('td', { class: 'nowrap' }, fmtTime(f.created_at, '—')),
    h('td', {}, f.state || '—'),
    h('td', { class: 'nowrap' }, h('code', {}, f.model_id || '—')),
    h('td', {}, qualityList(f.quality)),
    h('td', { class: 'nowrap' }, fmtBox(f.box)),
    isAdmin ? h('td', {}, h('button', {
      type: 'button', class: 'danger small delete-face', 'data-face-id': f.id,
      'aria-label': `Delete face ${f.id}`,
      onclick: (e) => deleteFace(e.currentTarget, c, subject, f),
    }, 'Delete')) : null));
  const table = h('table', { class: 'data' },
    h('caption', { class: 'visually-hidden' }, `Faces of ${displayName(subject)}`),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Face'),
      h('th', { scope: 'col' }, 'Enrolled'),
      h('th', { scope: 'col' }, 'State'),
      h('th', { scope: 'col' }, 'Model'),
      h('th', { scope: 'col' }, 'Quality'),
      h('th', { scope: 'col' }, 'Box'),
      isAdmin ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')) : null)),
    h('tbody', {}, rows));
  return tableWrap('Faces', table);
}

/**
 * Asks in the #confirm dialog; resolves true only for the confirming button
 * (Escape cancels). The title and button labels default to a deletion's.
 */
function confirmDialog(text, { title = 'Confirm deletion', yes = 'Delete', no = 'Cancel' } = {}) {
  const dialog = $('#confirm');
  $('#confirm-text').textContent = text;
  $('#confirm-title').textContent = title;
  $('#confirm-yes').textContent = yes;
  $('#confirm-no').textContent = no;
  if (typeof dialog.showModal !== 'function') return Promise.resolve(window.confirm(text));
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.showModal();
  });
}

async function deleteFace(button, c, subject, face) {
  const enrolled = new Date(face.created_at);
  const when = Number.isNaN(enrolled.getTime()) ? 'at an unknown time' : dateTimeFormat.format(enrolled);
  const ok = await confirmDialog(
    `Delete face ${face.id} (enrolled ${when}) of subject “${displayName(subject)}” ` +
    `(external id ${subject.external_id})? Its descriptor leaves the index. This cannot be undone.`);
  if (!ok) return;
  button.disabled = true;
  try {
    await api(`${collectionPath(c)}/faces/${enc(face.id)}`, { method: 'DELETE' });
    setStatus(`Face ${face.id} deleted.`);
    render({ keepStatus: true });
  } catch (err) {
    button.disabled = false;
    reportError(err);
  }
}

async function deleteSubject(button, c, subject, faceCount) {
  const ok = await confirmDialog(
    `Delete subject “${displayName(subject)}” (external id ${subject.external_id}) from ${c}, ` +
    `with all ${fmtInt(faceCount)} of its faces? This cannot be undone.`);
  if (!ok) return;
  button.disabled = true;
  try {
    await api(subjectPath(c, subject.id), { method: 'DELETE' });
    setStatus(`Subject “${displayName(subject)}” deleted.`);
    navigate(subjectsHash({ c }), { keepStatus: true });
  } catch (err) {
    button.disabled = false;
    reportError(err);
  }
}

// --------------------------------------------------------------- events view

const EVENT_KINDS = ['enroll', 'identify', 'verify', 'delete', 'import', 'key'];
const EVENT_FILTERS = ['kind', 'key_id', 'collection', 'since', 'until'];
const EVENTS_PAGE = 50;

/** A datetime-local value (the browser's time zone) as RFC 3339 in UTC; '' if empty or invalid. */
function localToRFC3339(value) {
  if (!value) return '';
  const date = new Date(value); // a date-time without an offset is local time
  return Number.isNaN(date.getTime()) ? '' : date.toISOString().replace(/\.000Z$/, 'Z');
}

/** An RFC 3339 time as a datetime-local value in the browser's time zone. */
function rfc3339ToLocal(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}` +
    (date.getSeconds() ? `:${p(date.getSeconds())}` : '');
}

async function viewEvents(route) {
  if (!isAdminSession()) return adminsOnly('Events');
  if (state.collections.length === 0) await loadCollections();
  const filters = Object.fromEntries(EVENT_FILTERS.map((k) => [k, route.params.get(k) || '']));
  const before = route.params.get('before') || '';
  const data = await api(withQuery('/v1/admin/events', { ...filters, before, limit: EVENTS_PAGE }));
  const events = asArray(data && data.events);
  const next = data && data.next_before != null ? String(data.next_before) : '';
  const filtered = EVENT_FILTERS.some((k) => filters[k]);
  return fragment(
    h('h1', { tabindex: -1 }, 'Events'),
    h('p', { class: 'muted' }, 'The audit trail, newest first. Times are in your time zone.'),
    eventsFilterForm(filters),
    events.length
      ? eventsTable(events, filters)
      : h('p', { class: 'empty' }, filtered ? 'No events match these filters.' : 'No events on this page.'),
    eventsPager(filters, before, next, events.length));
}

function eventsFilterForm(f) {
  const kind = h('select', { id: 'events-kind', name: 'kind' },
    h('option', { value: '' }, 'All kinds'), EVENT_KINDS.map((k) => h('option', { value: k }, k)));
  selectValue(kind, f.kind);
  const key = h('input', { id: 'events-key', name: 'key_id', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  key.value = f.key_id;
  const collection = h('select', { id: 'events-collection', name: 'collection' },
    h('option', { value: '' }, 'All collections'), state.collections.map((c) => h('option', { value: c.name }, c.name)));
  selectValue(collection, f.collection);
  const since = h('input', { id: 'events-since', name: 'since', type: 'datetime-local' });
  since.value = rfc3339ToLocal(f.since);
  const until = h('input', { id: 'events-until', name: 'until', type: 'datetime-local' });
  until.value = rfc3339ToLocal(f.until);
  const form = h('form', { id: 'events-filter', class: 'panel filters', 'aria-label': 'Filter events' },
    field('events-kind', 'Kind', kind),
    field('events-key', 'Key id', key),
    field('events-collection', 'Collection', collection),
    field('events-since', 'Since', since),
    field('events-until', 'Until', until),
    h('div', { class: 'filter-actions' },
      h('button', { id: 'events-apply', type: 'submit' }, 'Apply'),
      h('button', { id: 'events-clear', type: 'button', class: 'secondary', onclick: () => navigate(eventsHash()) }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const values = {
      kind: kind.value, key_id: key.value.trim(), collection: collection.value,
      since: localToRFC3339(since.value), until: localToRFC3339(until.value),
    };
    if (values.since && values.until && values.since >= values.until) {
      setStatus('“Since” must be before “Until”.', 'error');
      since.focus();
      return;
    }
    navigate(eventsHash(values));
  });
  return form;
}

function eventsTable(events, filters) {
  const rows = events.map((e) => h('tr', { class: 'event-row', 'data-event-id': e.id },
    h('td', { class: 'nowrap' }, fmtTime(e.at, '—', preciseFormat)),
    h('td', {}, e.kind || '—'),
    h('td', {}, e.outcome || '—'),
    h('td', {}, e.key_id
      ? h('a', { href: eventsHash({ ...filters, key_id: e.key_id }), title: `Only the events of key ${e.key_id}` },
        h('code', {}, e.key_id))
      : dash()),
    h('td', {}, e.collection || dash()),
    h('td', {}, e.subject_id
      ? (e.collection ? h('a', { href: subjectHash(e.collection, e.subject_id) }, shortId(e.subject_id)) : shortId(e.subject_id))
      : dash()),
    h('td', {}, e.face_id ? shortId(e.face_id) : dash()),
    h('td', {}, e.detail == null ? dash() : h('code', { class: 'detail-json' }, JSON.stringify(e.detail)))));
  return tableWrap('Events', dataTable('Events, newest first',
    ['Time', 'Kind', 'Outcome', 'Key', 'Collection', 'Subject', 'Face', 'Detail'], rows));
}

/** Cursor paging: "Older" follows `next_before`; "Newest" drops the cursor. */
function eventsPager(filters, before, next, count) {
  const hasNext = next !== '' && next !== '0';
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('span', { class: 'muted' }, `${fmtInt(count)} ${count === 1 ? 'event' : 'events'} on this page`),
    h('button', { id: 'events-newest', type: 'button', class: 'secondary', hidden: !before,
      onclick: () => navigate(eventsHash(filters)) }, 'Newest'),
    h('button', { id: 'events-older', type: 'button', hidden: !hasNext,
      onclick: () => navigate(eventsHash({ ...filters, before: next })) }, 'Older'));
}

// -------------------------------------------------------------- imports view

const importPath = (c, job) => `${collectionPath(c)}/imports/${enc(job)}`;
const isActiveImport = (job) => job.state === 'queued' || job.state === 'running';
/** Failure rows shown on a job's page; the CSV download has them all. */
const FAILURES_SHOWN = 500;

async function fetchImports(c) {
  const data = await api(`${collectionPath(c)}/imports`);
  return asArray(data && data.imports);
}

async function viewImports(route) {
  if (state.collections.length === 0) await loadCollections();
  const c = pickCollection(route.params.get('c'));
  setCurrentCollection(c);
  const heading = h('h1', { tabindex: -1 }, 'Imports');
  if (!c) return fragment(heading, h('p', {}, 'There are no collections yet.'));
  const seq = renderSeq;
  const jobs = await fetchImports(c);
  const list = h('div', { id: 'imports-list' }, importsList(c, jobs));
  if (jobs.some(isActiveImport)) {
    poll(seq, () => fetchImports(c), (fresh) => {
      swapKeepingFocus(list, importsList(c, fresh));
      return fresh.some(isActiveImport);
    });
  }
  return fragment(heading,
    h('p', { class: 'muted' }, `Batch imports into ${c}, newest first. Running jobs refresh every 2 seconds.`),
    list);
}

function importsList(c, jobs) {
  if (!jobs.length) return h('p', { class: 'empty' }, `No imports into ${c} yet.`);
  const rows = jobs.map((j) => {
    const active = j.state === 'running';
    return h('tr', { class: 'import-row', 'data-job-id': j.id, 'data-state': j.state },
      h('th', { scope: 'row' }, h('a', { href: importHash(c, j.id), 'aria-label': `Import ${j.id}` }, shortId(j.id))),
      h('td', {}, stateBadge(j)),
      h('td', {}, sourceText(j.source)),
      h('td', { class: 'num' }, fmtInt(j.total)),
      h('td', { class: 'num' }, fmtInt(j.done)),
      h('td', { class: 'num' }, fmtInt(j.enrolled)),
      h('td', { class: 'num' }, fmtInt(j.skipped)),
      h('td', { class: 'num' }, fmtInt(j.failed)),
      h('td', { class: 'nowrap' }, progressBar(j)),
      h('td', { class: 'num nowrap' }, active ? fmtRate(j.faces_per_second) : dash()),
      h('td', { class: 'nowrap' }, active ? fmtDuration(j.eta_seconds) : dash()),
      h('td', { class: 'nowrap' }, fmtTime(j.created_at, '—')),
      h('td', { class: 'nowrap' }, fmtTime(j.finished_at, '—')));
  });
  return tableWrap(`Imports into ${c}`, dataTable(`Imports into ${c}`, [
    'Job', 'State', 'Source', ['Total', 'num'], ['Done', 'num'], ['Enrolled', 'num'], ['Skipped', 'num'],
    ['Failed', 'num'], 'Progress', ['Faces/s', 'num'], 'Time left', 'Created', 'Finished'], rows));
}

const fmtRate = (n) => (isNumber(n) ? `${decimalFormat.format(n)}/s` : '—');

function stateBadge(job) {
  return h('span', { class: `state state-${job.state}`, title: job.error || null }, job.state || '—');
}

/** done/total as a <progress> and a percentage. */
function progressBar(job) {
  const total = Number(job.total) || 0;
  const done = Math.min(Number(job.done) || 0, total);
  const finished = !isActiveImport(job);
  const pct = total ? Math.floor((done / total) * 100) : (finished && job.state === 'done' ? 100 : 0);
  return h('span', { class: 'progress-cell' },
    h('progress', { max: total || 1, value: total ? done : pct / 100, 'aria-label': `Progress of import ${job.id}` }),
    ' ', h('span', { class: 'muted' }, `${pct}%`));
}

/** The job's `source`: the upload's name or the server-local path, kind and archive type. */
function sourceText(src) {
  if (!src || typeof src !== 'object') return dash();
  const what = src.name || src.path || '';
  const how = [src.kind, src.archive, src.path && !src.name ? 'server path' : null,
    isNumber(src.bytes) ? fmtSize(src.bytes) : null].filter(Boolean).join(' · ');
  return h('span', { class: 'source' }, what ? h('code', {}, what) : null,
    what && how ? ' ' : null, how ? h('span', { class: 'muted' }, `(${how})`) : null);
}

async function viewImport(route) {
  if (state.collections.length === 0) await loadCollections();
  const { collection: c, job: id } = route;
  setCurrentCollection(c);
  const seq = renderSeq;
  const [job, failures] = await Promise.all([api(importPath(c, id)), failuresSection(c, id)]);
  const figures = h('div', { id: 'import-figures' }, importFigures(job));
  const cancel = isAdminSession()
    ? h('button', { id: 'cancel-import', type: 'button', class: 'danger', hidden: !isActiveImport(job),
      onclick: (e) => cancelImport(e.currentTarget, c, id) }, 'Cancel')
    : null;
  const failuresPanel = h('section', { class: 'panel', 'aria-labelledby': 'failures-heading' },
    h('h2', { id: 'failures-heading' }, 'Failed and skipped photos'),
    h('p', {}, h('a', { id: 'failures-csv', href: `${importPath(c, id)}/failures`, download: `import-${id}-failures.csv` },
      'Download failures (CSV)')),
    h('div', { id: 'import-failures' }, failuresBody(failures, job)));
  if (isActiveImport(job)) {
    poll(seq, () => api(importPath(c, id)), (fresh) => {
      swapKeepingFocus(figures, importFigures(fresh));
      if (cancel) cancel.hidden = !isActiveImport(fresh);
      if (isActiveImport(fresh)) return true;
      refreshFailures(seq, c, fresh); // finished: its list of failures is final now
      return false;
    });
  }
  return fragment(
    h('p', {}, h('a', { class: 'back', href: importsHash(c) }, '← All imports')),
    h('div', { class: 'title-row' }, h('h1', { tabindex: -1 }, `Import ${shortIdText(id)}`), cancel),
    h('p', { class: 'muted' }, `Into ${c}. `, h('code', {}, id)),
    figures, failuresPanel);
}

const shortIdText = (id) => (String(id).length > 12 ? String(id).slice(0, 8) : String(id));

function importFigures(j) {
  const running = j.state === 'running';
  const row = (label, cls, value) => [h('dt', {}, label), h('dd', { class: cls }, value)];
  return h('dl', { class: 'details job-figures' },
    row('State', 'job-state', stateBadge(j)),
    j.error ? row('Error', 'job-error error', j.error) : null,
    row('Source', 'job-source', sourceText(j.source)),
    row('Progress', 'job-progress', progressBar(j)),
    row('Total', 'job-total', fmtInt(j.total)),
    row('Done', 'job-done', fmtInt(j.done)),
    row('Enrolled', 'job-enrolled', fmtInt(j.enrolled)),
    row('Skipped', 'job-skipped', fmtInt(j.skipped)),
    row('Failed', 'job-failed', fmtInt(j.failed)),
    row(running ? 'Faces per second' : 'Average faces per second', 'job-rate',
      isNumber(j.faces_per_second) && (running || j.faces_per_second > 0) ? fmtRate(j.faces_per_second) : '—'),
    running ? row('Time left', 'job-eta', fmtDuration(j.eta_seconds)) : null,
    row('Created', 'job-created', fmtTime(j.created_at, '—')),
    row('Started', 'job-started', fmtTime(j.started_at, 'not yet')),
    row('Finished', 'job-finished', fmtTime(j.finished_at, '—')),
    j.key_id ? row('Started by key', 'job-key', h('code', {}, j.key_id)) : null);
}

/**
 * The first FAILURES_SHOWN failure rows of the job's CSV, parsed; an error
 * (other than 401) is kept to be shown in place of the table.
 */
async function failuresSection(c, id) {
  try {
    const records = await apiCSV(`${importPath(c, id)}/failures`, FAILURES_SHOWN + 2);
    return { header: records[0] || [], rows: records.slice(1) };
  } catch (err) {
    if (err.status === 401) throw err;
    return { error: err };
  }
}

async function refreshFailures(seq, c, job) {
  const failures = await failuresSection(c, job.id).catch((err) => ({ error: err }));
  if (seq !== renderSeq) return;
  if (failures.error && failures.error.status === 401) {
    reportError(failures.error);
    return;
  }
  const holder = $('#import-failures');
  if (holder) swapKeepingFocus(holder, failuresBody(failures, job));
}

function failuresBody({ header, rows, error }, job) {
  if (error) return h('p', { class: 'error' }, `Failures unavailable: ${error.message}`);
  if (!rows.length) return h('p', { class: 'empty' }, 'No photo failed or was skipped.');
  // Columns by name (seq, path, external_id, state, code, reason), by position if unnamed.
  const col = (name, fallback) => (header.indexOf(name) >= 0 ? header.indexOf(name) : fallback);
  const [iSeq, iPath, iExt, iState, iCode, iReason] =
    [col('seq', 0), col('path', 1), col('external_id', 2), col('state', 3), col('code', 4), col('reason', 5)];
  const shown = rows.slice(0, FAILURES_SHOWN);
  const table = tableWrap('Failed and skipped photos', dataTable('Failed and skipped photos',
    ['Path', 'External id', 'State', 'Reason code', 'Detail'],
    shown.map((r) => h('tr', { class: 'failure-row', 'data-seq': r[iSeq] ?? null },
      h('td', {}, h('code', { class: 'path' }, r[iPath] ?? '')),
      h('td', {}, r[iExt] ? h('code', {}, r[iExt]) : dash()),
      h('td', {}, r[iState] || '—'),
      h('td', {}, r[iCode] ? h('code', {}, r[iCode]) : dash()),
      h('td', { class: 'reason' }, r[iReason] || '—')))));
  if (rows.length <= FAILURES_SHOWN) return table;
  const total = (Number(job.failed) || 0) + (Number(job.skipped) || 0);
  return fragment(table, h('p', { class: 'note more-failures' },
    `Showing the first ${fmtInt(FAILURES_SHOWN)} of ${total > FAILURES_SHOWN ? fmtInt(total) : 'more'} rows: ` +
    'download the CSV for all of them.'));
}

async function cancelImport(button, c, id) {
  const ok = await confirmDialog(
    `Cancel import ${id} into ${c}? It stops now; the faces it already enrolled stay.`,
    { title: 'Cancel the import?', yes: 'Cancel import', no: 'Keep it running' });
  if (!ok) return;
  button.disabled = true;
  try {
    await api(importPath(c, id), { method: 'DELETE' });
    setStatus(`Import ${id} cancelled.`);
    render({ keepStatus: true });
  } catch (err) {
    button.disabled = false;
    reportError(err);
  }
}

// ----------------------------------------------------------------- keys view

const KEY_ROLES = ['admin', 'enroll', 'identify', 'read'];

async function fetchKeys() {
  const data = await api('/v1/admin/keys');
  return asArray(data && data.keys);
}

async function viewKeys() {
  if (!isAdminSession()) return adminsOnly('Keys');
  if (state.collections.length === 0) await loadCollections();
  const heading = h('h1', { tabindex: -1 }, 'Keys');
  let keys;
  try {
    keys = await fetchKeys();
  } catch (err) {
    // Collection-scoped admin keys may not manage keys.
    if (err.status === 403) return fragment(heading, h('p', { class: 'notice' }, err.message));
    throw err;
  }
  const seq = renderSeq;
  const list = h('div', { id: 'keys-list' });
  const refresh = async () => {
    const fresh = await fetchKeys();
    if (seq === renderSeq) swapKeepingFocus(list, keysTable(fresh, refresh));
  };
  list.append(keysTable(keys, refresh));
  // The new key's secret lives only in this element: leaving the page drops it.
  const secretSlot = h('div', { class: 'secret-slot' });
  const onCreated = (made) => {
    const box = secretBox(made);
    secretSlot.replaceChildren(box);
    $('#key-secret-token', box).focus();
    setStatus(`Key “${made.key ? made.key.name : ''}” created.`);
    refresh().catch(reportError);
  };
  return fragment(heading,
    h('p', { class: 'muted' }, 'API keys, oldest first. Secrets are never shown again after creation.'),
    h('section', { class: 'panel', 'aria-labelledby': 'keys-heading' },
      h('h2', { id: 'keys-heading' }, 'All keys'), list),
    h('section', { class: 'panel', 'aria-labelledby': 'key-form-heading' },
      h('h2', { id: 'key-form-heading' }, 'Create a key'), keyForm(onCreated), secretSlot));
}

function keysTable(keys, refresh) {
  if (!keys.length) return h('p', { class: 'empty' }, 'No keys.');
  const rows = keys.map((k) => {
    const own = state.session && k.id === state.session.key_id;
    return h('tr', { class: k.revoked_at ? 'key-row revoked' : 'key-row', 'data-key-id': k.id },
      h('td', {}, h('code', {}, k.id)),
      h('th', { scope: 'row' }, k.name || h('span', { class: 'unnamed' }, '(no name)'),
        own ? [' ', h('span', { class: 'own-key' }, 'this session’s key')] : null),
      h('td', {}, h('span', { class: 'role' }, k.role)),
      h('td', {}, k.collection || h('span', { class: 'muted' }, 'all collections')),
      h('td', { class: 'nowrap' }, fmtTime(k.created_at, '—')),
      h('td', { class: 'nowrap' }, fmtTime(k.last_used_at, 'never')),
      h('td', { class: 'nowrap' }, k.revoked_at ? fmtTime(k.revoked_at) : '—'),
      h('td', {}, k.revoked_at ? null : h('button', {
        type: 'button', class: 'danger small revoke-key', 'data-key-id': k.id,
        'aria-label': `Revoke key ${k.name || k.id}`, onclick: (e) => revokeKey(e.currentTarget, k, refresh),
      }, 'Revoke')));
  });
  return tableWrap('API keys', dataTable('API keys', ['Id', 'Name', 'Role', 'Collection', 'Created', 'Last used', 'Revoked',
    h('span', { class: 'visually-hidden' }, 'Actions')], rows));
}

async function revokeKey(button, key, refresh) {
  const own = state.session && key.id === state.session.key_id;
  const ok = await confirmDialog(
    `Revoke key “${key.name}” (${key.id}, role ${key.role})? Requests with it fail from now on` +
    (own ? '. It is this session’s key: you will be signed out.' : '.') + ' This cannot be undone.',
    { title: 'Revoke the key?', yes: 'Revoke' });
  if (!ok) return;
  button.disabled = true;
  try {
    await api(`/v1/admin/keys/${enc(key.id)}`, { method: 'DELETE' });
  } catch (err) {
    button.disabled = false;
    reportError(err);
    return;
  }
  if (own) {
    endSession(`Key “${key.name}” revoked: this session ended with it. Sign in with another key.`);
    return;
  }
  setStatus(`Key “${key.name}” revoked.`);
  await refresh().catch(reportError);
}

function keyForm(onCreated) {
  const name = h('input', { id: 'key-name', name: 'name', type: 'text', required: true, maxlength: 200,
    autocomplete: 'off', 'aria-describedby': 'key-error' });
  const role = h('select', { id: 'key-role', name: 'role', 'aria-describedby': 'key-role-hint' },
    KEY_ROLES.map((r) => h('option', { value: r }, r)));
  role.value = 'read'; // least privilege unless chosen otherwise
  const scoped = state.session && state.session.collection;
  const collection = h('select', { id: 'key-collection', name: 'collection' },
    scoped ? null : h('option', { value: '' }, 'all collections'),
    state.collections.map((c) => h('option', { value: c.name }, c.name)));
  const error = h('p', { id: 'key-error', class: 'error', 'aria-live': 'polite' });
  const submit = h('button', { id: 'key-create', type: 'submit' }, 'Create key');
  const form = h('form', { id: 'key-form', class: 'filters key-form', novalidate: true },
    field('key-name', 'Name', name),
    field('key-role', 'Role', role,
      'admin: everything; enroll: add subjects and faces; identify: identify and verify; read: look only.'),
    field('key-collection', 'Collection scope', collection),
    h('div', { class: 'filter-actions' }, submit),
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    if (!name.value.trim()) {
      error.textContent = 'Enter a name for the key.';
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const made = await api('/v1/admin/keys', {
        method: 'POST', body: { name: name.value.trim(), role: role.value, collection: collection.value },
      });
      if (!state.session) return;
      form.reset();
      role.value = 'read';
      onCreated(made || {});
    } catch (err) {
      if (err.status === 401) reportError(err);
      else error.textContent = err.message;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** The new key's secret, shown once: a read-only input, a Copy button, and the warning. */
function secretBox(made) {
  const key = made.key || {};
  const input = h('input', { id: 'key-secret-token', type: 'text', readonly: true, autocomplete: 'off',
    spellcheck: 'false', 'aria-describedby': 'key-secret-note' });
  input.value = made.token || '';
  input.addEventListener('focus', () => input.select());
  const canCopy = !!(navigator.clipboard && navigator.clipboard.writeText);
  const copy = canCopy ? h('button', { id: 'key-copy', type: 'button', class: 'secondary', onclick: async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      setStatus('The key was copied to the clipboard.');
    } catch {
      setStatus('Could not copy: select the key and copy it by hand.', 'error');
    }
  } }, 'Copy') : null;
  const scope = key.collection ? `, ${key.collection} only` : '';
  return h('div', { id: 'key-secret', class: 'secret-box', role: 'region', 'aria-labelledby': 'key-secret-heading' },
    h('h3', { id: 'key-secret-heading' }, `New key “${key.name || ''}” (${key.role || ''}${scope})`),
    h('label', { for: 'key-secret-token' }, 'Secret API key'),
    h('div', { class: 'secret-row' }, input, copy),
    h('p', { id: 'key-secret-note', class: 'secret-note' }, 'Shown only once: store it now; only its hash is kept.'));
}

// ------------------------------------------------------------------ try view

async function viewTry(route) {
  const heading = h('h1', { tabindex: -1 }, 'Try it');
  if (!isAdminSession()) {
    return fragment(heading, h('p', { class: 'notice' },
      'Needs an admin key: identifying faces takes the identify permission, which read keys do not have.'));
  }
  if (state.collections.length === 0) await loadCollections();
  const c = pickCollection(route.params.get('c'));
  setCurrentCollection(c);
  if (!c) return fragment(heading, h('p', {}, 'There are no collections yet.'));
  const input = h('input', { id: 'try-image', name: 'image', type: 'file', accept: 'image/*', required: true,
    'aria-describedby': 'try-hint' });
  const submit = h('button', { id: 'try-submit', type: 'submit' }, 'Identify');
  const result = h('div', { id: 'try-result', class: 'try-result' });
  const form = h('form', { id: 'try-form', class: 'panel try-form' },
    h('label', { for: 'try-image' }, 'Photo'),
    h('div', { class: 'try-row' }, input, submit),
    h('p', { id: 'try-hint', class: 'hint' }, `The faces of the photo are compared with the subjects of ${c}.`));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    identifyPhoto(c, input, submit, result);
  });
  return fragment(heading, form, result);
}

async function identifyPhoto(c, input, submit, result) {
  const file = input.files && input.files[0];
  if (!file) {
    setStatus('Choose a photo first.', 'error');
    input.focus();
    return;
  }
  const seq = renderSeq;
  submit.disabled = true;
  result.setAttribute('aria-busy', 'true');
  setStatus('Identifying…');
  try {
    const body = new FormData();
    body.append('image', file, file.name);
    const data = (await api(`${collectionPath(c)}/identify`, { method: 'POST', body })) || {};
    if (seq !== renderSeq) return;
    releaseTryImage();
    tryImageURL = URL.createObjectURL(file);
    result.replaceChildren(...tryResult(c, data, tryImageURL, file.name));
    const faces = asArray(data.faces);
    const matched = faces.filter((f) => f.decision === 'match').length;
    setStatus(faces.length
      ? `${fmtInt(faces.length)} ${faces.length === 1 ? 'face' : 'faces'} found, ${fmtInt(matched)} matched.`
      : 'No face found in this photo.');
  } catch (err) {
    if (seq === renderSeq) reportError(err);
  } finally {
    submit.disabled = false;
    result.removeAttribute('aria-busy');
  }
}

const candidateName = (cand) => cand.display_name || cand.external_id || cand.subject_id || '?';

/** The photo with one numbered box per face, and the list of faces and candidates. */
function tryResult(c, data, url, fileName) {
  const faces = asArray(data.faces);
  const img = h('img', { src: url, alt: `The photo ${fileName}, ${faces.length} ${faces.length === 1 ? 'face' : 'faces'} outlined` });
  // Boxes are in image pixels: the overlay's viewBox is the image's size.
  const overlay = svg('svg', { class: 'try-overlay', preserveAspectRatio: 'none', 'aria-hidden': 'true' });
  const draw = (w, hgt) => {
    overlay.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
    overlay.replaceChildren(...faces.map((f, i) => faceMark(f, i + 1, w, hgt)));
  };
  if (isNumber(data.width) && isNumber(data.height) && data.width > 0 && data.height > 0) draw(data.width, data.height);
  else img.addEventListener('load', () => draw(img.naturalWidth, img.naturalHeight), { once: true });
  const figure = h('figure', { class: 'try-figure' }, img, overlay);
  const list = faces.length
    ? h('ul', { class: 'face-results' }, faces.map((f, i) => faceResult(c, f, i + 1, isNumber(f.threshold) ? f.threshold : data.threshold)))
    : h('p', { class: 'empty' }, 'No face found in this photo.');
  return [h('h2', {}, 'Result'),
    h('p', { class: 'muted' }, `Decision ${policyText(data.decision)} · threshold ${fmtThreshold(data.threshold)}` + (data.mode ? ` · mode ${data.mode}` : '')),
    figure, list];
}

/** A face's box and its number, sized for the image (w × hgt pixels). */
function faceMark(face, n, w, hgt) {
  const box = asArray(face.box);
  if (box.length !== 4) return svg('g', {});
  const [l, t, r, b] = box;
  const kind = face.decision === 'match' ? 'match' : 'unknown';
  const fs = Math.max(10, Math.round(Math.max(w, hgt) / 32));
  const labelW = fs * (0.7 * String(n).length + 0.6);
  const labelY = t - fs * 1.3 >= 0 ? t - fs * 1.3 : t; // above the box, or inside it at the top edge
  const who = face.decision === 'match' && face.match ? candidateName(face.match) : 'unknown';
  return svg('g', { class: `face-mark ${kind}` },
    svg('rect', { class: `face-box ${kind}`, x: l, y: t, width: r - l, height: b - t, 'vector-effect': 'non-scaling-stroke' },
      svg('title', {}, `Face ${n}: ${who}`)),
    svg('rect', { class: `face-label-bg ${kind}`, x: l, y: labelY, width: labelW, height: fs * 1.3 }),
    svg('text', { class: 'face-label', x: l + labelW / 2, y: labelY + fs * 1.05, 'font-size': fs, 'text-anchor': 'middle' }, String(n)));
}

function faceResult(c, face, n, threshold) {
  const match = face.decision === 'match' && face.match ? face.match : null;
  const candidates = asArray(face.candidates);
  return h('li', { class: `face-result ${match ? 'match' : 'unknown'}`, 'data-face-number': n, 'data-decision': face.decision || 'unknown' },
    h('h3', {}, h('span', { class: 'face-number' }, String(n)), ' ',
      match ? ['Match: ', h('a', { href: subjectHash(c, match.subject_id) }, candidateName(match))] : 'Unknown'),
    h('p', { class: 'muted' },
      (match ? `Distance ${fmtDistance(match.distance)}, threshold ${fmtThreshold(threshold)}` +
        (isNumber(match.fpir) ? `; a stranger scores this well with a chance of ${fmtShare(match.fpir)}.` : '.')
        : `No candidate was within the threshold ${fmtThreshold(threshold)}` +
          (candidates.some((x) => x.distance <= threshold) ? ' that was not given to another face.' : '.')) +
      (face.second_look ? ' Near the threshold: decided on a second look with the mirror image.' : '')),
    candidates.length
      ? h('ol', { class: 'candidates', 'aria-label': `Candidates for face ${n}` }, candidates.map((cand) =>
        h('li', { class: 'candidate' },
          h('a', { href: subjectHash(c, cand.subject_id) }, candidateName(cand)),
          cand.external_id && cand.display_name ? [' ', h('code', {}, cand.external_id)] : null,
          ': ', h('span', { class: 'distance' }, fmtDistance(cand.distance)),
          isNumber(cand.fpir) ? h('span', { class: 'muted fpir' }, ` · stranger chance ${fmtShare(cand.fpir)}`) : null,
          isNumber(threshold) && cand.distance <= threshold ? h('span', { class: 'muted' }, ' (within threshold)') : null)))
      : h('p', { class: 'muted' }, 'No candidates.'));
}

// ------------------------------------------------------------------- session

function showSignIn() {
  $('#shell').hidden = true;
  $('#view').hidden = true;
  $('#signin').hidden = false;
  document.title = 'Sign in · Visage admin';
  $('#login-key').focus();
}

async function startSession(session, collections) {
  state.session = session;
  const who = $('#whoami');
  who.replaceChildren();
  appendChildren(who, [
    h('span', { class: 'who-name' }, session.key_name || session.key_id || 'API key'), ' ',
    h('span', { class: 'role' }, session.role),
    session.collection ? h('span', { class: 'scope' }, ` · ${session.collection} only`) : null]);
  who.title = session.expires_at ? `Session until ${preciseFormat.format(new Date(session.expires_at))}` : '';
  // Read keys do not see the admin-only pages' links (the pages say so if opened).
  for (const id of ['#nav-events', '#nav-keys']) $(id).hidden = session.role !== 'admin';
  $('#signin').hidden = true;
  $('#shell').hidden = false;
  $('#view').hidden = false;
  try {
    if (collections) setCollections(collections);
    else await loadCollections();
  } catch (err) {
    reportError(err);
    if (!state.session) return;
  }
  render({ keepStatus: true });
}

/** Forgets the session and everything shown with it, then shows the sign-in form. */
function endSession(message, kind = 'info') {
  state.session = null;
  state.collections = [];
  state.collectionsAt = 0;
  renderSeq++;
  stopPolling();
  releaseTryImage();
  const dialog = $('#confirm');
  if (dialog.open) dialog.close();
  $('#view').replaceChildren();
  $('#whoami').replaceChildren();
  $('#collection').replaceChildren();
  showSignIn();
  if (message) setStatus(message, kind);
}

function showLoginError(message) {
  $('#login-error').textContent = message;
}

async function onLogin(event) {
  event.preventDefault();
  const input = $('#login-key');
  const button = $('#login-submit');
  const key = input.value.trim();
  showLoginError('');
  if (!key) {
    showLoginError('Enter an API key.');
    input.focus();
    return;
  }
  button.disabled = true;
  try {
    const session = await api(SESSION_PATH, { method: 'POST', body: { key } });
    input.value = '';
    clearStatus();
    await startSession(session);
  } catch (err) {
    // The key was sent once; clear it either way rather than keep it in the page.
    input.value = '';
    showLoginError(err.message);
    input.focus();
  } finally {
    button.disabled = false;
  }
}

async function onSignOut() {
  try {
    await api(SESSION_PATH, { method: 'DELETE' });
  } catch (err) {
    // A 401 means the session had already ended: signed out all the same.
    if (err.status !== 401) {
      reportError(err);
      return;
    }
  }
  endSession('Signed out.');
}

async function boot() {
  performance.mark('visage:boot');
  $('#login-form').addEventListener('submit', onLogin);
  $('#signout').addEventListener('click', onSignOut);
  $('#collection').addEventListener('change', onCollectionChange);
  window.addEventListener('hashchange', () => render());
  try {
    // The session and the collections at once: with no session the second
    // fails as the first does, and is ignored.
    const collections = api('/v1/collections').catch(() => null);
    const session = await api(SESSION_PATH);
    await startSession(session, await collections);
  } catch (err) {
    showSignIn();
    if (err.status !== 401) setStatus(`Could not check the session: ${err.message}`, 'error');
  }
}

boot();
