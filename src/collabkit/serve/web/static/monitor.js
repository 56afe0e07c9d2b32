'use strict';
// Monitor: concentration of exposure and of the training signal, over time and per model
// version (GET /v1/monitor), the alerts it raises, the thresholds (PUT, admin key), and the
// canary's two arms (GET /v1/models/canary).
(() => {
  const $ = (id) => document.getElementById(id);
  const el = ck.el;
  const METRICS = {
    gini: 'Gini of exposure', coverage: 'Catalogue coverage', top1_share: "Top 1% items' share",
    users1_share: "Top 1% users' share of ratings", users5_share: "Top 5% users' share of ratings",
  };
  const CONFIG = { responsive: true, displaylogo: false };
  const share = { range: [0, 1.02], tickformat: '.0%' };

  function layout(empty, shapes) {
    return {
      margin: { l: 48, r: 8, t: 8, b: 40 }, yaxis: share, legend: { orientation: 'h', y: -0.2 },
      shapes: shapes || [],
      annotations: empty ? [{ text: 'No data yet', showarrow: false, xref: 'paper', yref: 'paper', x: 0.5, y: 0.5 }] : [],
    };
  }

  // dashed lines at the thresholds of the metrics a chart shows
  function lines(thresholds, names) {
    return names.filter((m) => thresholds[m] !== null && thresholds[m] !== undefined).map((m) => ({
      type: 'line', xref: 'paper', x0: 0, x1: 1, y0: thresholds[m], y1: thresholds[m],
      line: { dash: 'dash', width: 1, color: '#b3261e' },
    }));
  }

  function over(series, names) {
    return names.map((m) => ({
      type: 'scatter', mode: 'lines+markers', name: METRICS[m],
      x: series.map((p) => p.end), y: series.map((p) => p[m]),
    }));
  }

  async function load() {
    if (!window.Plotly) return ck.status('The chart library did not load (the plotly package is missing).', 'error');
    const m = await ck.read('/v1/monitor?periods=' + $('periods').value + '&hours=' + $('hours').value);
    if (m === undefined) return undefined;
    const exposure = ['gini', 'coverage', 'top1_share'], signal = ['users1_share', 'users5_share'];
    const none = !m.series.length;
    await Plotly.react('chart-exposure', over(m.series, exposure), layout(none, lines(m.thresholds, exposure)), CONFIG);
    await Plotly.react('chart-signal', over(m.series, signal), layout(none, lines(m.thresholds, signal)), CONFIG);
    const names = m.versions.map((v) => 'v' + v.version + (v.status === 'live' ? ' (live)' : ''));
    const bars = Object.keys(METRICS).map((k) => ({ type: 'bar', name: METRICS[k], x: names, y: m.versions.map((v) => v[k]) }));
    await Plotly.react('chart-versions', bars, Object.assign(layout(!m.versions.length), { barmode: 'group' }), CONFIG);
    const row = (label, p) => el('tr', {}, el('td', { text: label }), el('td', { class: 'num', text: String(p.exposures) }),
      ...Object.keys(METRICS).map((k) => el('td', { class: 'num', text: ck.pct(p[k]) })));
    $('numbers').tBodies[0].replaceChildren(...m.versions.map((v) => row('v' + v.version + ' (' + v.status + ')', v)));
    $('series').tBodies[0].replaceChildren(...m.series.map((p) => row(ck.when(p.end), p)));
    alerts(m.alerts);
    for (const k of Object.keys(METRICS)) {
      const input = $('t-' + k);
      if (document.activeElement !== input) input.value = m.thresholds[k] === null ? '' : m.thresholds[k];
    }
    ck.status(none
      ? 'Nothing has been shown yet: the charts fill in as the service answers recommendation requests.'
      : m.series.reduce((s, p) => s + p.exposures, 0).toLocaleString() + ' recommendations shown, '
        + m.catalogue.toLocaleString() + ' items in the catalogue.');
  }

  async function canary() {
    const report = await ck.read('/v1/models/canary');
    if (report === undefined) return undefined;
    const c = report.canary;
    $('canary-text').textContent = !c ? 'No canary has run: versions go live for everyone at once.'
      : (c.status === 'running' ? 'Version ' + c.version + ' serves ' + Math.round(100 * c.fraction) + '% of the users. '
        + (report.verdict ? 'The rule: ' + report.verdict.action + ' (' + report.verdict.reason + ').' : '')
        : 'The last canary (version ' + c.version + ') was ' + c.status + ': ' + c.reason + '.');
    const arms = Object.entries(report.arms || {});
    $('arms').tBodies[0].replaceChildren(...arms.map(([name, f]) => el('tr', { 'data-arm': name },
      el('td', { text: name }), el('td', { class: 'num', text: 'v' + f.version }),
      ...[f.users, f.lists, f.shown, f.rated].map((x) => el('td', { class: 'num', text: String(x) })),
      el('td', { class: 'num', text: ck.pct(f.rating_through) }), el('td', { class: 'num', text: ck.num(f.mean_rating, 2) }))));
  }

  function alerts(list) {
    const box = $('alerts');
    if (!list.length) return box.replaceChildren();
    box.replaceChildren(el('strong', { text: list.length === 1 ? 'Alert' : list.length + ' alerts' }),
      el('ul', {}, ...list.map((a) => el('li', { text: METRICS[a.metric] + ': ' + a.message }))));
  }

  $('controls').addEventListener('submit', (e) => { e.preventDefault(); load(); canary(); });
  $('t-key').value = ck.keys.admin();
  $('thresholds').addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = $('t-key').value.trim() || ck.keys.admin();
    if (!key) {
      ck.status('Saving thresholds needs an admin key.', 'error');
      return $('t-key').focus();
    }
    const body = {};
    for (const k of Object.keys(METRICS)) {
      const v = $('t-' + k).value.trim();
      body[k] = v === '' ? null : Number(v);
    }
    try {
      await ck.api('/v1/monitor/thresholds', { method: 'PUT', key, body });
      ck.keys.setAdmin(key);
      await load();
      ck.status('Thresholds saved.', 'ok');
    } catch (err) {
      ck.fail(err);
    }
  });
  load();
  canary();
})();
