// The gymrelay status page: polls the admin API every 2 s and draws what it answers.
// Every value from the API reaches the page as text (textContent, attributes), never as markup,
// so nothing a webhook carried can run here.
'use strict';

(function () {
  const POLL_MS = 2000;
  // Sparklines need one request per studio; they refresh less often than the rest.
  const SPARK_MS = 10000;
  const SPARK_LIMIT = 40;
  const RECENT_EVENTS = 25;
  const TOKEN_KEY = 'gymrelay.admin-token';
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const STATES = {
    running: { label: 'Running', tone: 'ok', rank: 4 },
    retrying: { label: 'Retrying', tone: 'warn', rank: 2 },
    credentials_rejected: { label: 'Credentials rejected', tone: 'bad', rank: 0 },
    config_error: { label: 'Config error', tone: 'bad', rank: 1 },
    paused: { label: 'Paused', tone: 'idle', rank: 3 },
  };
  const OUTCOME_TONES = {
    accepted: 'ok', fetched: 'ok', duplicate: 'idle', filtered: 'idle', skipped: 'idle',
    not_found: 'warn', invalid: 'bad', unavailable: 'bad', dead_letter: 'bad',
  };

  const $ = (id) => document.getElementById(id);

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    studios: [],
    orphans: [],
    intakeProblem: null,
    events: [],
    letters: [],
    minutes: null,
    sparks: new Map(),
    sparksAt: 0,
    seenEvents: new Set(),
    sort: { key: 'name', dir: 1 },
    filter: '',
    selected: null,
    timer: null,
    polling: false,
    lettersKey: '',
    // The studio whose Reconcile request is on its way.
    reconciling: null,
  };

  // ---- DOM helpers: text only ------------------------------------------------------------

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name === 'text') node.textContent = String(value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    return append(node, children);
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return append(node, children);
  }

  // ---- formatting -------------------------------------------------------------------------

  const number = new Intl.NumberFormat();

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  }

  function dateTime(ms) {
    return new Date(ms).toLocaleString([], {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
    });
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return '';
    if (seconds < 60) return Math.round(seconds) + ' s';
    if (seconds < 3600) return Math.floor(seconds / 60) + ' min';
    const h = Math.floor(seconds / 3600);
    if (h < 48) return h + ' h ' + Math.floor((seconds % 3600) / 60) + ' min';
    return Math.floor(h / 24) + ' d';
  }

  // A time of day today, with the date on other days.
  function when(at) {
    return new Date(at).toDateString() === new Date().toDateString() ? clock(at) : dateTime(at);
  }

  function plural(n, one, many) {
    return number.format(n) + ' ' + (n === 1 ? one : many || one + 's');
  }

  function ms(value) {
    if (value === null || value === undefined) return '';
    if (value < 10) return value.toFixed(1) + ' ms';
    if (value < 1000) return Math.round(value) + ' ms';
    return (value / 1000).toFixed(1) + ' s';
  }

  // "/v1/customers/{id}/contracts" -> "customers/contracts"; the full template is in the tooltip.
  function endpointName(endpoint) {
    const parts = endpoint.split('/').filter((p) => p && !/^v\d+$/.test(p) && !p.startsWith('{'));
    return parts.join('/') || endpoint;
  }

  // "file:/srv/out/berlin.ndjson" -> "file · berlin.ndjson"; the full key goes in the tooltip.
  function sinkName(key) {
    const colon = key.indexOf(':');
    if (colon < 0) return key;
    const kind = key.slice(0, colon);
    const rest = key.slice(colon + 1);
    let short = rest;
    if (kind === 'http') {
      try { short = new URL(rest).host; } catch (_) { /* keep the key */ }
    } else {
      short = rest.split('/').filter(Boolean).pop() || rest;
    }
    return kind + ' · ' + short;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * step) return m * step;
    return 10 * step;
  }

  // ---- the admin API ----------------------------------------------------------------------

  class Refused extends Error {}

  async function api(method, path) {
    const res = await fetch(path, {
      method,
      headers: { Authorization: 'Bearer ' + state.token, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    const message = (body && body.error) || 'HTTP ' + res.status;
    if (res.status === 401 || res.status === 403) throw new Refused(message);
    if (!res.ok) throw new Error(message);
    return body;
  }

  const studioPath = (id) => 'api/studios/' + encodeURIComponent(id);

  // ---- polling ----------------------------------------------------------------------------

  async function poll() {
    clearTimeout(state.timer);
    if (state.polling || !state.token) return;
    state.polling = true;
    try {
      const [studios, activity, letters] = await Promise.all([
        api('GET', 'api/studios'),
        api('GET', 'api/activity?limit=' + RECENT_EVENTS),
        api('GET', 'api/dead-letters'),
      ]);
      state.studios = studios.studios || [];
      state.orphans = studios.removed_with_pending_events || [];
      state.intakeProblem = [studios.storage, studios.certificate]
        .map((part) => part && part.problem)
        .filter(Boolean)
        .join(' · ') || null;
      state.events = activity.events || [];
      state.letters = letters.dead_letters || [];
      if (!state.studios.some((s) => s.id === state.selected)) {
        const first = visibleStudios()[0] || state.studios[0];
        state.selected = first ? first.id : null;
      }
      state.minutes = state.selected
        ? (await api('GET', studioPath(state.selected) + '/minutes')).minutes
        : null;
      if (state.selected && state.minutes) state.sparks.set(state.selected, state.minutes);
      if (Date.now() - state.sparksAt > SPARK_MS) await refreshSparks();
      showDashboard();
      render();
      connection(true, 'Live · ' + clock(Date.now()));
    } catch (e) {
      state.polling = false;
      if (e instanceof Refused) { signOut(e.message); return; }
      connection(false, 'Cannot reach the relay (' + e.message + '), retrying');
    }
    state.polling = false;
    state.timer = setTimeout(poll, POLL_MS);
  }

  async function refreshSparks() {
    state.sparksAt = Date.now();
    const ids = visibleStudios().slice(0, SPARK_LIMIT).map((s) => s.id);
    const answers = await Promise.all(ids.map((id) =>
      api('GET', studioPath(id) + '/minutes').then((a) => [id, a.minutes], () => [id, null])));
    for (const [id, minutes] of answers) if (minutes) state.sparks.set(id, minutes);
  }

  function connection(ok, text) {
    $('conn').className = 'conn ' + (ok ? 'conn-ok' : 'conn-bad');
    $('conn-text').textContent = text;
  }

  // ---- sign-in ----------------------------------------------------------------------------

  function showDashboard() {
    if (!$('dashboard').hidden) return;
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('sign-out').hidden = false;
  }

  function signOut(reason) {
    clearTimeout(state.timer);
    state.token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    $('dashboard').hidden = true;
    $('sign-out').hidden = true;
    $('login').hidden = false;
    $('connect').disabled = false;
    $('login-error').hidden = !reason;
    $('login-error').textContent = reason ? 'The relay refused: ' + reason : '';
    connection(false, 'Not connected');
    $('token').focus();
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    $('token').value = '';
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login-error').hidden = true;
    $('connect').disabled = true;
    connection(false, 'Connecting…');
    poll();
  });

  $('sign-out').addEventListener('click', () => signOut(''));

  // ---- studios table ----------------------------------------------------------------------

  function budgetRatio(s) {
    let worst = 0;
    for (const use of Object.values(s.budget || {})) {
      if (use.held_for_seconds) return 2;
      if (use.limit) worst = Math.max(worst, use.used / use.limit);
    }
    return worst;
  }

  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const holds = (s) => sum(Object.values(s.openapi_holds || {}));
  const failingSinks = (s) => (s.sinks || []).filter((k) => k.failing).length;

  const SORT_KEYS = {
    name: (s) => (s.name || s.id).toLowerCase(),
    state: (s) => (STATES[s.state] || { rank: 9 }).rank,
    events: (s) => s.webhooks_last_hour,
    inbox: (s) => s.inbox_depth * 1e9 + (s.oldest_pending_seconds || 0),
    budget: budgetRatio,
    holds,
    sinks: failingSinks,
    dead: (s) => s.dead_letters,
    // Descending: sweeps under way, then given up, then by when the last one ended.
    reconcile: (s) => {
      const r = s.reconcile;
      if (!r) return 0;
      if (r.running) return 3e13;
      if (r.failure) return 2e13;
      return r.last ? r.last.finished_ms : 0;
    },
  };

  function visibleStudios() {
    const needle = state.filter.trim().toLowerCase();
    const key = SORT_KEYS[state.sort.key];
    return state.studios
      .filter((s) => !needle || s.id.toLowerCase().includes(needle) || (s.name || '').toLowerCase().includes(needle))
      .sort((a, b) => {
        const x = key(a);
        const y = key(b);
        if (x < y) return -state.sort.dir;
        if (x > y) return state.sort.dir;
        return a.id < b.id ? -1 : 1;
      });
  }

  function stateBadge(name) {
    const known = STATES[name] || { label: name, tone: 'idle' };
    return el('span', { class: 'badge tone-' + known.tone, text: known.label });
  }

  function sparkline(minutes) {
    const box = svg('svg', { class: 'spark', viewBox: '0 0 60 20', preserveAspectRatio: 'none', 'aria-hidden': 'true' });
    if (!minutes) return box;
    const max = Math.max(1, ...minutes.map((m) => m.webhooks));
    const points = minutes.map((m, i) => i + 0.5 + ',' + (19 - (m.webhooks / max) * 17).toFixed(2)).join(' ');
    box.append(
      svg('polygon', { points: '0.5,20 ' + points + ' 59.5,20', class: 'spark-area' }),
      svg('polyline', { points, class: 'spark-line', 'vector-effect': 'non-scaling-stroke' }));
    return box;
  }

  function budgetCell(s) {
    const entries = Object.entries(s.budget || {});
    if (!entries.length) return el('span', { class: 'muted', text: 'no requests yet' });
    return el('div', { class: 'budgets' }, entries.map(([endpoint, use]) => {
      const ratio = use.limit ? Math.min(1, use.used / use.limit) : 0;
      const held = use.held_for_seconds;
      const tone = held ? 'bad' : ratio >= 0.9 ? 'warn' : 'ok';
      const fill = el('span', { class: 'bar-fill tone-' + tone });
      fill.style.width = (held ? 100 : Math.max(ratio * 100, use.used ? 2 : 0)).toFixed(1) + '%';
      return el('div', { class: 'budget', title: endpoint + ': ' + use.used + ' of ' + use.limit + ' requests in the last 60 s' + (held ? ', held for ' + held + ' s after a 429' : '') },
        el('span', { class: 'budget-name', text: endpointName(endpoint) }),
        el('span', { class: 'bar' }, fill),
        el('span', { class: 'budget-value', text: held ? 'held ' + held + ' s' : use.used + '/' + use.limit }));
    }));
  }

  function holdsCell(s) {
    const total = holds(s);
    const detail = Object.entries(s.openapi_holds || {}).filter(([, n]) => n > 0)
      .map(([endpoint, n]) => endpointName(endpoint) + ': ' + n).join(', ');
    return el('span', { class: total ? 'pill tone-warn' : 'muted', title: detail || 'no 429 since start', text: number.format(total) });
  }

  function sinksCell(s) {
    return el('div', { class: 'sinks' }, (s.sinks || []).map((k) => {
      const tone = k.failing ? 'bad' : k.delivered ? 'ok' : 'idle';
      const status = k.failing ? 'failing now' : k.delivered ? 'healthy' : 'nothing delivered yet';
      return el('div', { class: 'sink', title: k.sink + ': ' + status + ', ' + k.delivered + ' delivered, ' + k.failed + ' failed attempts since start' },
        el('span', { class: 'dot tone-' + tone, 'aria-hidden': 'true' }),
        el('span', { class: 'sink-name', text: sinkName(k.sink) }),
        k.failed ? el('span', { class: 'sink-failed', text: k.failed + ' failed' }) : null);
    }));
  }

  function studioRow(s) {
    const selected = s.id === state.selected;
    const oldest = s.oldest_pending_seconds;
    const inboxTone = !s.inbox_depth ? 'muted' : oldest > 600 ? 'tone-text-bad' : oldest > 60 ? 'tone-text-warn' : '';
    const problem = s.config_error || s.last_error;
    return el('tr', { 'data-studio': s.id, class: selected ? 'selected' : null, tabindex: '0', 'aria-selected': selected ? 'true' : 'false' },
      el('td', { 'data-label': 'Studio' },
        el('div', { class: 'studio-name', text: s.name || s.id }),
        el('div', { class: 'studio-id', text: s.id })),
      el('td', { 'data-label': 'State' }, stateBadge(s.state),
        problem ? el('div', { class: 'problem', title: problem, text: problem }) : null),
      el('td', { 'data-label': 'Last hour', class: 'num' },
        el('div', { class: 'with-spark' }, sparkline(state.sparks.get(s.id)),
          el('span', { class: 'big', text: number.format(s.webhooks_last_hour) }))),
      el('td', { 'data-label': 'Inbox', class: 'num' },
        el('div', { class: 'big ' + inboxTone, text: number.format(s.inbox_depth) }),
        oldest !== null && oldest !== undefined ? el('div', { class: 'sub ' + inboxTone, text: 'oldest ' + age(oldest) }) : null),
      el('td', { 'data-label': 'Open API budget' }, budgetCell(s)),
      el('td', { 'data-label': '429 holds', class: 'num' }, holdsCell(s)),
      el('td', { 'data-label': 'Sinks' }, sinksCell(s)),
      el('td', { 'data-label': 'Dead letters', class: 'num' },
        s.dead_letters
          ? el('a', { class: 'pill tone-bad', href: '#dead-' + s.id, text: number.format(s.dead_letters) })
          : el('span', { class: 'muted', text: '0' })),
      el('td', { 'data-label': 'Reconcile' }, reconcileCell(s)));
  }

  function renderStudios() {
    const rows = visibleStudios();
    $('studios-body').replaceChildren(...rows.map(studioRow));
    $('studios-empty').hidden = rows.length > 0 || state.studios.length === 0;
    $('studio-count').textContent = rows.length === state.studios.length
      ? String(state.studios.length) : rows.length + ' of ' + state.studios.length;
    for (const th of document.querySelectorAll('#studios th[data-sort]')) {
      const active = th.dataset.sort === state.sort.key;
      if (active) th.setAttribute('aria-sort', state.sort.dir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
    $('storage').hidden = !state.intakeProblem;
    $('storage').textContent = state.intakeProblem || '';
    const orphans = state.orphans;
    $('orphans').hidden = orphans.length === 0;
    $('orphans').textContent = orphans.length
      ? 'Events on disk for removed studios (they resume when the tenant file returns): '
        + orphans.map((o) => o.id + ' (' + o.inbox_depth + ')').join(', ')
      : '';
  }

  document.querySelector('#studios thead').addEventListener('click', (event) => {
    const th = event.target.closest('th[data-sort]');
    if (!th) return;
    const key = th.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === 'name' || key === 'state' ? 1 : -1) };
    renderStudios();
  });

  // `change` too: some ways of emptying a field (WebDriver's clear, autofill) fire only that.
  for (const type of ['input', 'change']) {
    $('filter').addEventListener(type, (event) => {
      state.filter = event.target.value;
      renderStudios();
    });
  }

  function select(row) {
    if (!row) return;
    state.selected = row.dataset.studio;
    state.minutes = state.sparks.get(state.selected) || null;
    render();
    poll();
  }

  $('studios-body').addEventListener('click', (event) => {
    if (event.target.closest('a')) return;
    select(event.target.closest('tr[data-studio]'));
  });
  $('studios-body').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      select(event.target.closest('tr[data-studio]'));
    }
  });

  // ---- summary ----------------------------------------------------------------------------

  function renderSummary() {
    const studios = state.studios;
    const attention = studios.filter((s) => s.state !== 'running').length;
    $('sum-studios').textContent = number.format(studios.length);
    $('sum-studios-note').textContent = attention ? attention + ' need attention' : 'all running';
    $('sum-studios-note').className = 'stat-note' + (attention ? ' tone-text-warn' : '');
    $('sum-events').textContent = number.format(sum(studios.map((s) => s.webhooks_last_hour)));
    const last = state.events.find((e) => e.kind === 'webhook');
    $('sum-events-note').textContent = last ? 'last at ' + clock(last.at_ms) : 'none yet';
    $('sum-inbox').textContent = number.format(sum(studios.map((s) => s.inbox_depth)));
    const oldest = Math.max(0, ...studios.map((s) => s.oldest_pending_seconds || 0));
    $('sum-inbox-note').textContent = oldest ? 'oldest ' + age(oldest) : 'all caught up';
    const dead = sum(studios.map((s) => s.dead_letters));
    $('sum-dead').textContent = number.format(dead);
    $('sum-dead').className = 'stat-value' + (dead ? ' tone-text-bad' : '');
    $('sum-dead-note').textContent = dead ? 'need a fix and a replay' : 'none';
  }

  // ---- per-studio charts ------------------------------------------------------------------

  // One transparent column per minute carries the tooltip for that minute.
  function hoverColumns(minutes, describe) {
    return minutes.map((m, i) => svg('rect', { x: i, y: 0, width: 1, height: 100, class: 'hover' },
      svg('title', {}, clock(m.at_ms).slice(0, 5) + ' · ' + describe(m))));
  }

  function gridLines() {
    return [0, 50, 100].map((y) => svg('line', { x1: 0, x2: 60, y1: y, y2: y, class: 'grid', 'vector-effect': 'non-scaling-stroke' }));
  }

  // Polylines through the minutes `has` accepts; a gap breaks the line.
  function lines(minutes, has, value, max, cls) {
    const runs = [];
    let run = [];
    minutes.forEach((m, i) => {
      if (has(m)) run.push(i + 0.5 + ',' + (100 - (value(m) / max) * 96).toFixed(2));
      else if (run.length) { runs.push(run); run = []; }
    });
    if (run.length) runs.push(run);
    return runs.map((points) => points.length === 1
      ? svg('line', { x1: Number(points[0].split(',')[0]) - 0.4, x2: Number(points[0].split(',')[0]) + 0.4, y1: points[0].split(',')[1], y2: points[0].split(',')[1], class: cls, 'vector-effect': 'non-scaling-stroke' })
      : svg('polyline', { points: points.join(' '), class: cls, 'vector-effect': 'non-scaling-stroke' }));
  }

  function renderCharts(minutes) {
    const max = niceMax(Math.max(...minutes.map((m) => Math.max(m.webhooks, m.delivered))));
    $('events-max').textContent = number.format(max);
    $('chart-events').replaceChildren(
      ...gridLines(),
      ...minutes.map((m, i) => svg('rect', { x: i + 0.15, width: 0.7, y: 100 - (m.webhooks / max) * 96, height: (m.webhooks / max) * 96, class: 'bar-webhooks' })),
      ...lines(minutes, () => true, (m) => m.delivered, max, 'line-delivered'),
      ...hoverColumns(minutes, (m) => m.webhooks + ' received, ' + m.delivered + ' delivered'));
    const received = sum(minutes.map((m) => m.webhooks));
    const delivered = sum(minutes.map((m) => m.delivered));
    $('events-note').textContent = number.format(received) + ' received, ' + number.format(delivered) + ' delivered in the last hour';

    const acked = minutes.filter((m) => m.webhooks > 0);
    const top = niceMax(Math.max(0, ...acked.map((m) => m.ack_ms_max)));
    $('latency-max').textContent = ms(top);
    $('chart-latency').replaceChildren(
      ...gridLines(),
      ...minutes.map((m, i) => m.webhooks
        ? svg('rect', { x: i + 0.15, width: 0.7, y: 100 - (m.ack_ms_max / top) * 96, height: (m.ack_ms_max / top) * 96, class: 'bar-max' })
        : null).filter(Boolean),
      ...lines(minutes, (m) => m.webhooks > 0, (m) => m.ack_ms_avg, top, 'line-avg'),
      ...hoverColumns(minutes, (m) => m.webhooks ? 'average ' + ms(m.ack_ms_avg) + ', max ' + ms(m.ack_ms_max) : 'no webhooks'));
    if (acked.length) {
      const avg = sum(acked.map((m) => m.ack_ms_avg * m.webhooks)) / sum(acked.map((m) => m.webhooks));
      $('latency-note').textContent = 'average ' + ms(avg) + ', slowest ' + ms(Math.max(...acked.map((m) => m.ack_ms_max)));
    } else {
      $('latency-note').textContent = 'no webhooks in the last hour';
    }
  }

  function renderDetail() {
    const studio = state.studios.find((s) => s.id === state.selected);
    $('detail').hidden = !studio;
    if (!studio) return;
    $('detail-title').replaceChildren(
      el('span', { text: studio.name || studio.id }), ' ',
      el('span', { class: 'studio-id', text: studio.id }), ' ', stateBadge(studio.state));
    const problem = studio.config_error
      ? 'Tenant file: ' + studio.config_error + ' (the last good version keeps running)'
      : studio.last_error ? 'Last error: ' + studio.last_error : '';
    $('detail-error').hidden = !problem;
    $('detail-error').textContent = problem;
    if (state.minutes) renderCharts(state.minutes);
    renderReconcile(studio);
  }

  // ---- reconcile --------------------------------------------------------------------------

  const TRIGGERS = {
    manual: 'by an operator',
    downtime: 'after the relay was down',
    schedule: 'on schedule',
    baseline: 'when reconcile was turned on',
  };

  const changes = (p) => p.added + p.changed + p.deleted;
  const triggered = (sweep) => TRIGGERS[sweep.trigger] || '(' + sweep.trigger + ')';

  function reconcileCell(s) {
    const r = s.reconcile;
    if (!r) return el('span', { class: 'muted', text: 'never swept' });
    if (r.running) {
      const p = r.running.progress;
      const error = r.running.last_error;
      return el('div', {},
        el('span', { class: 'badge tone-ok', text: 'Sweeping' }),
        el('div', { class: 'sub' + (error ? ' tone-text-warn' : ''), title: error || null,
          text: error ? 'retrying a page' : plural(p.customers, 'customer') }));
    }
    if (r.failure) return el('span', { class: 'badge tone-bad', title: r.failure, text: 'Given up' });
    const last = r.last;
    return el('div', {},
      el('div', { text: last.baseline ? 'baseline' : plural(changes(last.progress), 'change') }),
      el('div', { class: 'sub', text: when(last.finished_ms) }));
  }

  function renderReconcile(studio) {
    const r = studio.reconcile || {};
    const running = r.running;
    const starting = state.reconciling === studio.id;
    const button = $('reconcile-start');
    button.disabled = Boolean(running) || starting;
    button.textContent = running ? 'Sweep under way' : starting ? 'Starting…' : 'Reconcile';
    const problem = running
      ? running.last_error && 'Retrying a page: ' + running.last_error
      : r.failure && 'The last sweep was given up: ' + r.failure;
    $('reconcile-problem').hidden = !problem;
    $('reconcile-problem').textContent = problem || '';

    const sweep = running || r.last;
    if (!sweep) {
      $('reconcile-body').replaceChildren(el('p', { class: 'reconcile-line muted',
        text: r.failure ? 'No sweep has finished yet.' : 'Never swept.' }));
      return;
    }
    const p = sweep.progress;
    const line = running
      ? [el('span', { class: 'badge tone-ok', text: 'Sweeping' }), ' started ' + when(sweep.started_ms) + ' ' + triggered(sweep)]
      : [el('span', { class: 'badge tone-idle', text: 'Last sweep' }),
        ' finished ' + when(sweep.finished_ms) + ' after ' + age((sweep.finished_ms - sweep.started_ms) / 1000)
          + ', started ' + triggered(sweep)];
    const note = sweep.baseline
      ? (sweep.emit_all
        ? 'Baseline: the first sweep of this studio. It records every customer and emits each one.'
        : 'Baseline: the first sweep of this studio. It records every customer and emits nothing; later sweeps emit what changed.')
      : sweep.emit_all ? 'Emits every customer, changed or not.' : null;
    const tiles = [
      ['pages', 'Pages', p.pages],
      ['customers', 'Customers', p.customers],
      ['added', 'Added', p.added],
      ['changed', 'Changed', p.changed],
      ['deleted', 'Deleted', p.deleted],
      ['emitted', 'Events emitted', p.emitted],
      ['requests', 'Open API requests', p.requests, 'Requests the sweep made, retries included: the Open API budget it used'],
    ];
    // replaceChildren, unlike el(), would show a missing note as the text "null".
    $('reconcile-body').replaceChildren(...[
      el('p', { class: 'reconcile-line' }, line),
      note ? el('p', { class: 'reconcile-note', text: note }) : null,
      el('div', { class: 'tiles' }, tiles.map(([key, label, value, title]) => el('div', { class: 'tile', title },
        el('span', { class: 'tile-label', text: label }),
        el('span', { class: 'tile-value', 'data-count': key, text: number.format(value) })))),
    ].filter(Boolean));
  }

  $('reconcile-start').addEventListener('click', async () => {
    const id = state.selected;
    const button = $('reconcile-start');
    if (!id || button.disabled) return;
    state.reconciling = id;
    renderDetail();
    try {
      const answer = await api('POST', studioPath(id) + '/reconcile');
      const studio = state.studios.find((s) => s.id === id);
      if (studio) studio.reconcile = { running: answer.running, last: answer.last, failure: answer.failure };
      toast('Reconcile started for ' + id, 'ok');
    } catch (e) {
      if (e instanceof Refused) { signOut(e.message); return; }
      toast('Reconcile not started: ' + e.message, 'bad');
    } finally {
      state.reconciling = null;
    }
    render();
    poll();
  });

  // ---- recent events ----------------------------------------------------------------------

  function renderEvents() {
    const fresh = new Set();
    const rows = state.events.map((e) => {
      const key = [e.at_ms, e.studio, e.kind, e.event_type, e.entity_id, e.outcome].join('|');
      fresh.add(key);
      const isNew = state.seenEvents.size > 0 && !state.seenEvents.has(key);
      return el('tr', { class: isNew ? 'new' : null },
        el('td', { 'data-label': 'Time', class: 'time', text: clock(e.at_ms) }),
        el('td', { 'data-label': 'Studio', text: e.studio }),
        el('td', { 'data-label': 'Event' },
          el('span', { class: 'event-type', text: e.event_type }), ' ',
          el('span', { class: 'kind', text: e.kind === 'webhook' ? 'received' : 'delivered' })),
        el('td', { 'data-label': 'Entity', class: 'num', text: e.entity_id === null || e.entity_id === undefined ? '–' : e.entity_id }),
        el('td', { 'data-label': 'Outcome' }, el('span', { class: 'badge tone-' + (OUTCOME_TONES[e.outcome] || 'idle'), text: e.outcome.replace(/_/g, ' ') })),
        el('td', { 'data-label': 'Latency', class: 'num', text: ms(e.latency_ms) }));
    });
    state.seenEvents = fresh;
    $('events-body').replaceChildren(...rows);
    $('events-empty').hidden = rows.length > 0;
  }

  // ---- dead letters -----------------------------------------------------------------------

  function renderLetters() {
    const letters = state.letters;
    $('dead-count').textContent = letters.length ? String(letters.length) : '';
    $('dead-empty').hidden = letters.length > 0;
    // Redrawn only when the list changes, so a button is never replaced under the pointer.
    const key = JSON.stringify(letters.map((l) => [l.id, l.reason, (l.event.attempts || []).length]));
    if (key === state.lettersKey) return;
    state.lettersKey = key;
    const byStudio = new Map();
    for (const letter of letters) {
      if (!byStudio.has(letter.studio)) byStudio.set(letter.studio, []);
      byStudio.get(letter.studio).push(letter);
    }
    const names = new Map(state.studios.map((s) => [s.id, s.name || s.id]));
    const groups = [...byStudio.entries()].map(([studio, list]) => el('div', { class: 'dl-group', id: 'dead-' + studio },
      el('div', { class: 'dl-head' },
        el('div', {},
          el('strong', { text: names.get(studio) || studio }), ' ',
          el('span', { class: 'studio-id', text: studio }), ' ',
          el('span', { class: 'pill tone-bad', text: String(list.length) })),
        el('button', { type: 'button', class: 'secondary', 'data-replay-studio': studio, text: 'Replay all' })),
      el('ul', { class: 'dl-list' }, list.map(letterItem))));
    $('dead-letters').replaceChildren(...groups);
  }

  function letterItem(letter) {
    const event = letter.event;
    const attempts = event.attempts || [];
    return el('li', { class: 'dl', 'data-dead-letter': letter.id },
      el('div', { class: 'dl-body' },
        el('div', { class: 'dl-title' },
          el('span', { class: 'event-type', text: event.event_type }),
          event.entity_id === null || event.entity_id === undefined ? null : el('span', { class: 'muted', text: ' · entity ' + event.entity_id })),
        el('div', { class: 'dl-reason', text: letter.stage + ': ' + letter.reason }),
        el('div', { class: 'dl-meta' },
          el('span', { text: attempts.length + (attempts.length === 1 ? ' attempt' : ' attempts') }), ' · ',
          el('span', { text: 'dead since ' + dateTime(letter.dead_at_ms) }), ' · ',
          el('span', { class: 'mono', title: 'vendor uuid', text: event.id })),
        attempts.length ? el('details', {},
          el('summary', { text: 'Attempts' }),
          el('ol', { class: 'attempts' }, attempts.map((a) => el('li', {},
            el('span', { class: 'time', text: clock(a.at_ms) }), ' ',
            el('span', { class: 'muted', text: a.stage }), ' ',
            el('span', { text: a.error }))))) : null),
      el('button', { type: 'button', class: 'primary', 'data-replay': letter.id, text: 'Replay' }));
  }

  $('dead-letters').addEventListener('click', async (event) => {
    const button = event.target.closest('button[data-replay], button[data-replay-studio]');
    if (!button || button.disabled) return;
    const one = button.dataset.replay;
    const path = one
      ? 'api/dead-letters/' + encodeURIComponent(one) + '/replay'
      : studioPath(button.dataset.replayStudio) + '/dead-letters/replay';
    button.disabled = true;
    button.textContent = 'Replaying…';
    try {
      const answer = await api('POST', path);
      const n = (answer.replayed || []).length;
      toast(n === 1 ? 'Replayed ' + answer.replayed[0] : 'Replayed ' + n + ' dead letters', 'ok');
      state.lettersKey = '';
      poll();
    } catch (e) {
      if (e instanceof Refused) { signOut(e.message); return; }
      toast('Replay failed: ' + e.message, 'bad');
      button.disabled = false;
      button.textContent = one ? 'Replay' : 'Replay all';
    }
  });

  let toastTimer = null;
  function toast(text, tone) {
    const node = $('toast');
    node.textContent = text;
    node.className = 'toast tone-' + tone;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 4000);
  }

  // ---- everything -------------------------------------------------------------------------

  function render() {
    renderSummary();
    renderStudios();
    renderDetail();
    renderEvents();
    renderLetters();
  }

  if (state.token) {
    connection(false, 'Connecting…');
    poll();
  } else {
    signOut('');
  }
})();
