// Visage admin dashboard: a framework-free ES module.
//
// Security notes:
// - The API key exists only in the sign-in input and in the body of one
//   POST /admin/session; the server answers with an HttpOnly session cookie.
//   The key is never put in a URL, in Web Storage or in a JS-set cookie.
// - Every non-GET request carries the session's CSRF token in X-CSRF-Token.
// - Server data is rendered with textContent / createElement only (see h()),
//   never with innerHTML, and nothing inline is needed, so a strict CSP holds.

const SESSION_PATH = '/admin/session';
const CHART_DAYS = 30;
const SVG_NS = 'http://www.w3.org/2000/svg';

const state = {
  /** The session JSON of /admin/session, or null when signed out. */
  session: null,
  /** The collections from GET /v1/collections: [{name, threshold, created_at}]. */
  collections: [],
};

/**
 * Incremented by every render and sign-out. An async view checks it after
 * awaiting so that a slow response cannot overwrite a newer page.
 */
let renderSeq = 0;

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

// ----------------------------------------------------------------- formatting

const intFormat = new Intl.NumberFormat();
const decimalFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const thresholdFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dayLabelFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });

const isNumber = (n) => typeof n === 'number' && Number.isFinite(n);
const fmtInt = (n) => (isNumber(n) ? intFormat.format(n) : '—');
const fmtDecimal = (n) => (isNumber(n) ? decimalFormat.format(n) : '—');

/** A <time> in the browser's locale, keeping the exact value in datetime/title. */
function fmtTime(iso, empty = 'never') {
  if (!iso) return h('span', { class: 'muted' }, empty);
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, dateTimeFormat.format(date));
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
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'The server could not be reached. Check the connection and try again.');
  }
  if (res.status === 204) return null;
  const data = await readJSON(res);
  if (!res.ok) {
    const message = (data && (data.detail || data.title)) || `Request failed (HTTP ${res.status}).`;
    throw new ApiError(res.status, message, data);
  }
  return data;
}

const collectionPath = (c) => `/v1/collections/${enc(c)}`;
const subjectPath = (c, id) => `${collectionPath(c)}/subjects/${enc(id)}`;

async function loadCollections() {
  const data = await api('/v1/collections');
  state.collections = (data && Array.isArray(data.collections)) ? data.collections : [];
  fillCollectionSelect();
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
  if (parts[0] === 'subjects') {
    if (parts.length >= 3) return { name: 'subject', collection: parts[1], id: parts[2], params };
    if (parts.length === 2 && !params.has('c')) params.set('c', parts[1]);
    return { name: 'subjects', params };
  }
  return { name: 'overview', params };
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
}

function markNav(route) {
  const current = route.name === 'overview' ? '#nav-overview' : '#nav-subjects';
  for (const id of ['#nav-overview', '#nav-subjects']) {
    if (id === current) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
}

function onCollectionChange(event) {
  const c = event.target.value;
  const route = parseRoute();
  if (route.name === 'overview') navigate(overviewHash(c));
  else navigate(subjectsHash({ c, q: route.name === 'subjects' ? route.params.get('q') : '' }));
}

const VIEWS = { overview: viewOverview, subjects: viewSubjects, subject: viewSubject };

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
  const heading = $('h1', view);
  document.title = heading ? `${heading.textContent} · Visage admin` : 'Visage admin';
  if (focusInView) {
    const target = (focusId && document.getElementById(focusId)) || heading;
    if (target && view.contains(target)) target.focus();
  }
}

// ------------------------------------------------------------- overview view

async function viewOverview(route) {
  await loadCollections();
  const c = pickCollection(route.params.get('c'));
  setCurrentCollection(c);
  const heading = h('h1', { tabindex: -1 }, 'Overview');
  if (state.collections.length === 0) {
    return fragment(heading, h('p', {}, 'There are no collections yet.'));
  }
  const results = await Promise.allSettled(
    state.collections.map((col) => api(`${collectionPath(col.name)}/stats`)));
  const expired = results.find((r) => r.status === 'rejected' && r.reason && r.reason.status === 401);
  if (expired) throw expired.reason;
  const cards = state.collections.map((col, i) => collectionCard(col, results[i], col.name === c));
  const chart = await enrollmentsSection(c);
  return fragment(heading, h('div', { class: 'cards' }, cards), chart);
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
      statRow('Threshold', 'stat-threshold', isNumber(s.threshold) ? thresholdFormat.format(s.threshold) : '—'),
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

function enrollmentChart(series, c) {
  // Size the drawing to the viewport so its text stays readable at 390 px.
  const width = Math.min(960, Math.max(340, document.documentElement.clientWidth - 48));
  const height = 240;
  const m = { top: 12, right: 12, bottom: 30, left: 44 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const max = Math.max(0, ...series.map((d) => d.count));
  const step = niceStep(max);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const y = (v) => m.top + plotH - (v / top) * plotH;
  const slot = plotW / series.length;
  const barW = Math.max(2, slot * 0.72);
  const total = series.reduce((sum, d) => sum + d.count, 0);

  const chart = svg('svg', {
    id: 'chart-enrollments', class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Enrollments per day in ${c} over the last ${series.length} days: ` +
      `${intFormat.format(total)} in total, at most ${intFormat.format(max)} on one day.`,
  });

  const yAxis = svg('g', { class: 'axis y-axis' });
  for (let v = 0; v <= top; v += step) {
    yAxis.append(
      svg('line', { class: 'grid', x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }),
      svg('text', { class: 'tick-label', x: m.left - 6, y: y(v), 'text-anchor': 'end', 'dominant-baseline': 'middle' },
        intFormat.format(v)));
  }
  const xAxis = svg('g', { class: 'axis x-axis' },
    svg('line', { class: 'axis-line', x1: m.left, x2: width - m.right, y1: y(0), y2: y(0) }));
  const bars = svg('g', { class: 'bars' });
  series.forEach((d, i) => {
    const x = m.left + i * slot + (slot - barW) / 2;
    bars.append(svg('rect', {
      class: d.count ? 'bar' : 'bar zero', x: x.toFixed(1), y: y(d.count).toFixed(1),
      width: barW.toFixed(1), height: (y(0) - y(d.count)).toFixed(1),
    }, svg('title', {}, `${d.day}: ${d.count}`)));
    // Label weekly, counting back from the newest day so that today is labelled.
    if ((series.length - 1 - i) % 7 === 0) {
      xAxis.append(svg('text', { class: 'tick-label', x: (x + barW / 2).toFixed(1), y: height - 10, 'text-anchor': 'middle' },
        dayLabelFormat.format(new Date(`${d.day}T00:00:00Z`))));
    }
  });
  chart.append(yAxis, bars, xAxis);
  return chart;
}

/** The chart's numbers as a table, for screen readers and exact reading. */
function chartTable(series) {
  const days = series.filter((d) => d.count > 0);
  const body = days.length
    ? h('table', { class: 'data' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day (UTC)'), h('th', { scope: 'col', class: 'num' }, 'Faces enrolled'))),
      h('tbody', {}, days.map((d) => h('tr', {}, h('td', {}, d.day), h('td', { class: 'num' }, fmtInt(d.count))))))
    : h('p', { class: 'muted' }, 'No enrollments in this period.');
  return h('details', { class: 'chart-data' }, h('summary', {}, 'Show the numbers'), body);
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

/** Asks in the #confirm dialog; resolves true only for "Delete" (Escape cancels). */
function confirmDialog(text) {
  const dialog = $('#confirm');
  $('#confirm-text').textContent = text;
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

// ------------------------------------------------------------------- session

function showSignIn() {
  $('#shell').hidden = true;
  $('#view').hidden = true;
  $('#signin').hidden = false;
  document.title = 'Sign in · Visage admin';
  $('#login-key').focus();
}

async function startSession(session) {
  state.session = session;
  const who = $('#whoami');
  who.replaceChildren();
  appendChildren(who, [
    h('span', { class: 'who-name' }, session.key_name || session.key_id || 'API key'), ' ',
    h('span', { class: 'role' }, session.role),
    session.collection ? h('span', { class: 'scope' }, ` · ${session.collection} only`) : null]);
  who.title = session.expires_at ? `Session until ${new Date(session.expires_at).toLocaleString()}` : '';
  $('#signin').hidden = true;
  $('#shell').hidden = false;
  $('#view').hidden = false;
  try {
    await loadCollections();
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
  renderSeq++;
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
  $('#login-form').addEventListener('submit', onLogin);
  $('#signout').addEventListener('click', onSignOut);
  $('#collection').addEventListener('change', onCollectionChange);
  window.addEventListener('hashchange', () => render());
  try {
    await startSession(await api(SESSION_PATH));
  } catch (err) {
    showSignIn();
    if (err.status !== 401) setStatus(`Could not check the session: ${err.message}`, 'error');
  }
}

boot();
