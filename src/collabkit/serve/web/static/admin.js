'use strict';
// Admin: model versions and the rollout gate's decisions (GET /v1/models), promote / roll back /
// canary / train a candidate (admin key), training jobs (GET /v1/models/retrain), the canary
// (GET /v1/models/canary), ingestion counts and the store's scale (GET /v1/monitor/ingestion).
(() => {
  const $ = (id) => document.getElementById(id);
  const el = ck.el;
  const keyInput = $('admin-key');
  keyInput.value = ck.keys.admin();

  function key() {
    const k = ck.keys.admin();
    if (!k) {
      ck.status('Enter an admin key first.', 'error');
      keyInput.focus();
    }
    return k;
  }

  const HOW = {
    first: 'nothing was live',
    'after-cutoff': 'on ratings written after the live version was trained',
    'same-split': "the live version's recipe retrained on the same ratings",
  };

  function gate(m) {
    if (m.promoted === undefined) return 'registered by hand (no gate)';
    if (m.decided === false) return 'Kept as a candidate: the gate cannot decide: ' + m.reason;
    const live = m.rmse_live === null || m.rmse_live === undefined ? 'nothing was live' : 'live ' + ck.num(m.rmse_live);
    const how = HOW[m.gate] ? ', ' + HOW[m.gate] : '';
    const why = !m.promoted && m.reason && m.reason.indexOf('RMSE') !== 0 ? ' (' + m.reason + ')' : '';
    return (m.promoted ? 'Promoted' : 'Kept as a candidate') + ': RMSE ' + ck.num(m.rmse_candidate) + ' vs '
      + live + ' (tolerance ' + m.tolerance + ') on ' + m.n_test + ' held-out ratings' + how + why;
  }

  async function versions() {
    let list;
    try {
      list = await ck.api('/v1/models');
    } catch (e) {
      $('live').textContent = 'Unknown: the versions could not be read.';
      return ck.fail(e);
    }
    const live = list.find((v) => v.status === 'live');
    $('live').textContent = live
      ? 'Version ' + live.id + ' is live (' + (live.spec || 'registered model') + '), since ' + ck.when(live.promoted_at) + '.'
      : 'No version is live: promote one below.';
    $('live').dataset.version = live ? live.id : '';
    $('rollback').disabled = !list.some((v) => v.status === 'retired' && v.promoted_at);
    const canaryRuns = list.some((v) => v.canary !== null && v.canary !== undefined);
    const rows = list.slice().reverse().map((v) => el('tr', { 'data-version': v.id },
      el('td', { class: 'num', text: String(v.id) }),
      el('td', { class: v.status === 'live' ? 'status-live' : '',
        text: v.status + (v.canary ? ' (canary, ' + Math.round(100 * v.canary) + '% of users)' : '') }),
      el('td', { text: v.spec || v.name || '–' }),
      el('td', { text: ck.when(v.created_at) }),
      el('td', { text: gate(v.metrics || {}) }),
      el('td', {}, v.status === 'live' ? '–' : el('button', {
        type: 'button', text: 'Promote ' + v.id, 'aria-label': 'Promote version ' + v.id, onclick: () => promote(v.id),
      }), v.status === 'live' || canaryRuns ? null : el('button', {
        type: 'button', class: 'secondary', text: 'Canary ' + v.id, 'aria-label': 'Start a canary of version ' + v.id,
        onclick: () => startCanary(v.id),
      }))));
    $('versions').tBodies[0].replaceChildren(...rows);
    if (!rows.length) {
      $('versions').tBodies[0].replaceChildren(el('tr', {}, el('td', {
        colspan: '6', class: 'empty', text: 'No model versions yet: start the server with --model, or train one below.',
      })));
    }
    return list;
  }

  async function promote(id) {
    const k = key();
    if (!k) return;
    ck.status('Loading version ' + id + '…');
    try {
      const v = await ck.api('/v1/models/' + id + '/promote', { method: 'POST', key: k });
      ck.status('Version ' + v.id + ' is live.', 'ok');
    } catch (e) {
      ck.fail(e);
    }
    await versions();
  }

  $('rollback').addEventListener('click', async () => {
    const k = key();
    if (!k) return;
    try {
      const v = await ck.api('/v1/models/rollback', { method: 'POST', key: k });
      ck.status('Rolled back: version ' + v.id + ' is live again.', 'ok');
    } catch (e) {
      ck.fail(e);
    }
    await versions();
  });

  $('retrain').addEventListener('submit', async (e) => {
    e.preventDefault();
    const k = key();
    if (!k) return;
    try {
      const job = await ck.api('/v1/models/retrain', { method: 'POST', key: k, body: { spec: $('spec').value.trim() } });
      ck.status('Training job ' + job.id + ' is ' + job.status + '; it runs in its own process.', 'ok');
      for (let i = 0; i < 400; i++) {  // watch the job for up to twenty minutes
        const now = await jobs();
        const mine = now && now.find((j) => j.id === job.id);
        if (mine && (mine.status === 'done' || mine.status === 'failed')) {
          ck.status('Job ' + mine.id + ' ' + mine.status + ': ' + outcome(mine) + '.', mine.status === 'done' ? 'ok' : 'error');
          await versions();
          break;
        }
        await new Promise((r) => setTimeout(r, 3000));
      }
    } catch (err) {
      ck.fail(err);
    }
  });

  function outcome(j) {
    if (j.status === 'failed') return j.reason;
    if (j.status !== 'done') return '–';
    return 'version ' + j.version + ': ' + gate(j.result || {});
  }

  async function jobs() {
    const list = await ck.read('/v1/models/retrain');
    if (list === undefined) return undefined;
    const rows = list.map((j) => el('tr', { 'data-job': j.id },
      el('td', { class: 'num', text: String(j.id) }),
      el('td', { text: j.spec }),
      el('td', { class: 'job-' + j.status, text: j.status }),
      el('td', { class: 'num', text: Math.round(j.estimate_mb) + ' of ' + Math.round(j.limit_mb) + ' MB' }),
      el('td', { text: outcome(j) })));
    $('jobs').tBodies[0].replaceChildren(...rows);
    if (!rows.length) {
      $('jobs').tBodies[0].replaceChildren(el('tr', {}, el('td', { colspan: '5', class: 'empty', text: 'No training jobs yet.' })));
    }
    return list;
  }

  async function canary() {
    const report = await ck.read('/v1/models/canary');
    if (report === undefined) return undefined;
    const c = report.canary;
    const running = c && c.status === 'running';
    $('canary').textContent = !c ? 'No canary has run yet: start one from the table below.'
      : running ? 'Version ' + c.version + ' serves ' + Math.round(100 * c.fraction) + '% of the users beside version '
        + c.live_version + '. The rule: ' + (report.verdict ? report.verdict.action + ': ' + report.verdict.reason : '–') + '.'
        : 'The last canary, version ' + c.version + ', was ' + c.status + ' (' + c.reason + ').';
    $('canary').dataset.status = c ? c.status : '';
    $('canary-promote').disabled = !running;
    $('canary-rollback').disabled = !running;
  }

  async function startCanary(id) {
    const k = key();
    if (!k) return;
    ck.status('Loading version ' + id + '…');
    try {
      const c = await ck.api('/v1/models/' + id + '/canary', { method: 'POST', key: k, body: { fraction: Number($('fraction').value) } });
      ck.status('Version ' + c.version + ' now serves ' + Math.round(100 * c.fraction) + '% of the users.', 'ok');
    } catch (e) {
      ck.fail(e);
    }
    await versions();
    await canary();
  }

  async function endCanary(how) {
    const k = key();
    if (!k) return;
    try {
      await ck.api('/v1/models/canary/' + how, { method: 'POST', key: k });
      ck.status(how === 'promote' ? 'The canary is live for everyone.' : 'The canary was rolled back.', 'ok');
    } catch (e) {
      ck.fail(e);
    }
    await versions();
    await canary();
  }
  $('canary-promote').addEventListener('click', () => endCanary('promote'));
  $('canary-rollback').addEventListener('click', () => endCanary('rollback'));

  async function ingestion() {
    try {
      const c = await ck.api('/v1/monitor/ingestion');
      const rows = [
        ['Ratings stored', c.ratings], ['Users', c.users], ['Items', c.items],
        ['Ratings in the last hour', c.ratings_last_hour], ['Ratings in the last day', c.ratings_last_day],
        ['Recommendations shown (items)', c.exposures], ['Shown in the last hour', c.exposures_last_hour],
        ['Last rating', ck.when(c.last_rating_at)], ['Values accepted', c.scale],
        ['Stored ratings skipped', c.skipped ? c.skipped.toLocaleString() + ' (' + Object.entries(c.skipped_reasons)
          .map(([why, n]) => n.toLocaleString() + ' ' + why).join(', ') + ')' : 'none'],
      ];
      $('ingestion').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }),
        el('dd', { text: typeof v === 'number' ? v.toLocaleString() : v })]));
    } catch (e) {
      ck.fail(e);
    }
  }

  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    ck.keys.setAdmin(keyInput.value.trim());
    ck.status('Admin key kept for this tab.', 'ok');
  });
  $('key-forget').addEventListener('click', () => {
    ck.keys.setAdmin('');
    keyInput.value = '';
    ck.status('Admin key forgotten.', 'ok');
  });
  $('refresh').addEventListener('click', () => { versions(); jobs(); canary(); ingestion(); });
  versions();
  jobs();
  canary();
  ingestion();
})();
