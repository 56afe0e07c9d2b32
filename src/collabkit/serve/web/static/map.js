'use strict';
// Map of tastes: the items' PCA map (GET /v1/map) drawn with Plotly; hover shows a film's details,
// a click or a search (GET /v1/items?q=) picks a film: its story (GET .../story) and its
// neighbours (GET .../similar).
(() => {
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const el = ck.el;
  // Plotly reads point labels as its own small markup language: escape them so a title stays text
  const plain = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  let points = [], selected = null, bound = false;

  async function draw() {
    const n = $('n').value, x = $('ax').value, y = $('ay').value;
    if (x === y) return ck.status('Pick two different components.', 'error');
    if (!window.Plotly) return ck.status('The chart library did not load (the plotly package is missing).', 'error');
    const m = await ck.read('/v1/map?n=' + n + '&x=' + x + '&y=' + y);
    if (m === undefined) return undefined;
    points = m.points;
    const hasBias = points.some((p) => p.bias !== null);
    const top = points.slice(0, 25);  // the most-rated films carry their titles
    const ev = m.explained_variance;
    const films = {
      type: 'scatter', mode: 'markers', name: 'films', hoverinfo: 'none',
      x: points.map((p) => p.x), y: points.map((p) => p.y), customdata: points.map((p, i) => i),
      marker: {
        size: points.map((p) => 6 + Math.min(10, Math.sqrt(p.n_ratings) / 2)), opacity: 0.8,
        color: points.map((p) => (p.bias === null ? 0 : p.bias)), colorscale: 'RdBu', reversescale: true,
        cmid: 0, showscale: hasBias, colorbar: { title: { text: 'bias' }, thickness: 12 },
      },
    };
    const labels = {
      type: 'scatter', mode: 'text', hoverinfo: 'skip', textposition: 'top center',
      x: top.map((p) => p.x), y: top.map((p) => p.y), text: top.map((p) => plain(p.title || p.item)),
      textfont: { size: 10, color: '#333' },
    };
    const ring = {
      type: 'scatter', mode: 'markers', hoverinfo: 'skip', x: [], y: [],
      marker: { size: 22, color: 'rgba(0,0,0,0)', line: { color: '#d62728', width: 3 } },
    };
    const axis = (j) => ({ title: { text: 'PC' + j + ' (' + (100 * ev[j - 1]).toFixed(1) + '% of the variance)' }, zeroline: false });
    const layout = {
      margin: { l: 56, r: 8, t: 8, b: 48 }, showlegend: false, hovermode: 'closest', dragmode: 'pan',
      xaxis: axis(x), yaxis: axis(y),
    };
    await Plotly.react('map', [films, labels, ring], layout, { responsive: true, displaylogo: false, scrollZoom: true });
    bind();
    const ends = (c) => 'PC' + c.slice(2) + ' runs from ' + m.extremes[c].low.slice(0, 3).join('; ')
      + ' to ' + m.extremes[c].high.slice(0, 3).join('; ') + '.';
    $('axes').replaceChildren(...Object.keys(m.extremes).map((c) => el('p', { text: ends(c) })));
    ck.status(points.length + ' films drawn (model version ' + m.model_version + ').');
    if (selected) ringAt(selected);
  }

  function bind() {
    if (bound) return;
    bound = true;
    const map = $('map'), tip = $('tip');
    map.on('plotly_hover', (e) => {
      const pt = e.points.find((p) => p.curveNumber === 0);
      if (!pt) return;
      const p = points[pt.customdata];
      const lines = [
        el('strong', { text: p.title || 'item ' + p.item }),
        p.genres ? el('div', { text: p.genres.split('|').join(', ') }) : null,
        el('div', { text: 'bias ' + (p.bias === null ? '–' : p.bias.toFixed(2)) + ' · ' + p.n_ratings + ' ratings' }),
      ];
      tip.replaceChildren(...lines.filter(Boolean));
      tip.style.left = Math.min(e.event.clientX + 14, window.innerWidth - 290) + 'px';
      tip.style.top = (e.event.clientY + 14) + 'px';
      tip.hidden = false;
    });
    map.on('plotly_unhover', () => { tip.hidden = true; });
    map.on('plotly_click', (e) => {
      const pt = e.points.find((p) => p.curveNumber === 0);
      if (pt) select(points[pt.customdata].item);
    });
  }

  function ringAt(item) {
    const p = points.find((q) => q.item === item);
    if (window.Plotly && $('map').data) Plotly.restyle('map', { x: [p ? [p.x] : []], y: [p ? [p.y] : []] }, [2]);
    return Boolean(p);
  }

  async function select(item) {
    selected = item;
    const shown = ringAt(item);
    try {
      const [story, near] = await Promise.all([
        ck.api('/v1/items/' + enc(item) + '/story'),
        ck.api('/v1/items/' + enc(item) + '/similar?k=10'),
      ]);
      const genres = story.metadata.genres ? String(story.metadata.genres).split('|').join(', ') : '';
      $('d-title').textContent = story.title || 'item ' + item;
      $('d-meta').textContent = [story.metadata.year, genres].filter(Boolean).join(' · ')
        + (shown ? '' : ' (not among the films drawn: show more of them to see it on the map)');
      $('d-story').textContent = story.story;
      $('similar').replaceChildren(...near.similar.map((s) => el('li', {},
        el('button', { type: 'button', class: 'title', text: s.title || 'item ' + s.item, onclick: () => select(s.item) }),
        el('span', { class: 'because', text: 'cosine similarity ' + s.similarity.toFixed(2) }))));
      if (!near.similar.length) $('similar').replaceChildren(el('li', { class: 'empty', text: 'No neighbours.' }));
      $('d-title').focus({ preventScroll: true });
    } catch (e) {
      ck.fail(e);
    }
  }

  $('search-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = $('q').value.trim();
    if (!q) return;
    try {
      const found = await ck.api('/v1/items?q=' + enc(q) + '&limit=20');
      $('results').replaceChildren(...found.map((f) => el('li', {},
        el('button', { type: 'button', text: f.title || 'item ' + f.item, onclick: () => select(f.item) }))));
      if (!found.length) $('results').replaceChildren(el('li', { class: 'empty', text: 'No title contains “' + q + '”.' }));
      ck.status(found.length + (found.length === 1 ? ' film found.' : ' films found.'));
    } catch (err) {
      ck.fail(err);
    }
  });
  $('view-form').addEventListener('submit', (e) => { e.preventDefault(); draw(); });
  draw();
})();
