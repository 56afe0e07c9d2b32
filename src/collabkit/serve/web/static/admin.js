'use strict';
// Admin: model versions and the rollout gate's decisions (GET /v1/models), promote / roll back /
// train a candidate (admin key), ingestion counts (GET /v1/monitor/ingestion).
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

  function gate(m) {
    if (m.promoted === undefined) return 'registered by hand (no gate)';
    const live = m.rmse_live === null || m.rmse_live === undefined ? 'nothing was live' : 'live ' + ck.num(m.rmse_live);
    return (m.promoted ? 'Promoted' : 'Kept as a candidate') + ': RMSE ' + ck.num(m.rmse_candidate) + ' vs '
      + live + ' (tolerance ' + m.tolerance + ') on ' + m.n_test + ' held-out ratings';
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
    const rows = list.slice().reverse().map((v) => el('tr', { 'data-version': v.id },
      el('td', { class: 'num', text: String(v.id) }),
      el('td', { class: v.status === 'live' ? 'status-live' : '', text: v.status }),
      el('td', { text: v.spec || v.path.split(/[\\/]/).pop() || '–' }),
      el('td', { text: ck.when(v.created_at) }),
      el('td', { text: gate(v.metrics || {}) }),
      el('td', {}, v.status === 'live' ? '–' : el('button', {
        type: 'button', text: 'Promote ' + v.id, 'aria-label': 'Promote version ' + v.id, onclick: () => promote(v.id),
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
      const before = (await versions()) || [];
      await ck.api('/v1/models/retrain', { method: 'POST', key: k, body: { spec: $('spec').value.trim() } });
      ck.status('Training started; the new version appears in the table when it is done.', 'ok');
      for (let i = 0; i < 200; i++) {  // watch for the new version for up to ten minutes
        await new Promise((r) => setTimeout(r, 3000));
        const now = await versions();
        if (now && now.length > before.length) {
          const v = now[now.length - 1];
          ck.status('Version ' + v.id + ' trained. ' + gate(v.metrics || {}) + '.', 'ok');
          break;
        }
      }
    } catch (err) {
      ck.fail(err);
    }
  });

  async function ingestion() {
    try {
      const c = await ck.api('/v1/monitor/ingestion');
      const rows = [
        ['Ratings stored', c.ratings], ['Users', c.users], ['Items', c.items],
        ['Ratings in the last hour', c.ratings_last_hour], ['Ratings in the last day', c.ratings_last_day],
        ['Recommendations shown (items)', c.exposures], ['Shown in the last hour', c.exposures_last_hour],
        ['Last rating', ck.when(c.last_rating_at)],
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
  $('refresh').addEventListener('click', () => { versions(); ingestion(); });
  versions();
  ingestion();
})();
