"""The style sheet and script of the HTML report (``report/index.html``), inlined into the page."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 84rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1rem; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; vertical-align: top; text-align: left; }
th { background: #f4f6f8; }
table.scores td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta, .note { color: #666; font-size: .85rem; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.chart .ct { font-size: 12px; font-weight: 600; } .chart .tk { font-size: 10px; fill: #555; }
.controls { display: flex; flex-wrap: wrap; gap: .8rem; align-items: center; margin: .6rem 0; font-size: .9rem; }
.rows td.media img { display: block; max-width: 260px; }
.rows td.media audio { width: 220px; }
.rows td.pred.best { background: #e8f5e9; }
.rows td .score { display: block; color: #555; font-size: .8rem; font-variant-numeric: tabular-nums; }
.rows tr.disagree td.id { border-left: 3px solid #f4b400; }
.refs { margin: 0; padding-left: 1rem; } .q { font-style: italic; }
details { margin: .4rem 0; } pre { background: #f7f7f7; padding: .5rem; overflow-x: auto; font-size: .8rem; }
"""

JS = r"""
(function () {
  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }
  function fmt(v) { return v == null ? 'n/a' : (v * SCALE).toFixed(1); }
  var SCALE = 100;
  document.querySelectorAll('.gallery').forEach(function (root) {
    var data = JSON.parse(document.getElementById(root.dataset.src).textContent);
    var runs = data.runs, samples = data.samples;
    var sortSel = root.querySelector('.sort'), dis = root.querySelector('.disagree');
    var sizeSel = root.querySelector('.size'), info = root.querySelector('.pageinfo');
    var tbody = root.querySelector('tbody');
    var state = {order: [], page: 0};
    function key(i, how) {
      var s = samples[i].scores;
      if (how === 'spread') {
        var v = s.filter(function (x) { return x != null; });
        return v.length ? Math.max.apply(null, v) - Math.min.apply(null, v) : -1;
      }
      var m = /^s(\d+)$/.exec(how);
      return m ? s[+m[1]] : null;
    }
    function recompute() {
      var how = sortSel.value, dir = how.endsWith('-asc') ? 1 : -1;
      how = how.replace(/-(asc|desc)$/, '');
      var idx = [];
      for (var i = 0; i < samples.length; i++) if (!dis.checked || samples[i].disagree) idx.push(i);
      if (how !== 'id') {
        idx.sort(function (a, b) {
          var ka = key(a, how), kb = key(b, how);
          if (ka == null && kb == null) return a - b;
          if (ka == null) return 1;
          if (kb == null) return -1;
          return ka === kb ? a - b : (ka < kb ? -dir : dir);
        });
      }
      state.order = idx; state.page = 0; render();
    }
    function mediaCell(m) {
      if (!m) return '<span class="note">no media</span>';
      if (m.kind === 'image' || m.kind === 'video') return '<img loading="lazy" alt="" src="' + m.src + '">';
      if (m.kind === 'audio') return '<audio controls preload="none" src="' + m.src + '"></audio>';
      if (m.kind === 'audio-too-large') return '<span class="note">audio (too large to embed)</span>';
      return '<span class="note">' + esc(m.src || m.kind) + '</span>';
    }
    function refsList(refs) {  // each distinct reference once, with its count (VQA has 10 answers)
      var seen = {}, order = [];
      refs.forEach(function (r) { if (!(r in seen)) { seen[r] = 0; order.push(r); } seen[r]++; });
      return '<ul class="refs">' + order.slice(0, 5).map(function (r) {
        return '<li>' + esc(r) + (seen[r] > 1 ? ' <span class="note">×' + seen[r] + '</span>' : '') + '</li>';
      }).join('') + (order.length > 5 ? '<li class="note">+' + (order.length - 5) + ' more</li>' : '') + '</ul>';
    }
    function render() {
      var size = +sizeSel.value, n = state.order.length;
      var pages = Math.max(1, Math.ceil(n / size));
      state.page = Math.min(state.page, pages - 1);
      var start = state.page * size, html = [];
      for (var k = start; k < Math.min(n, start + size); k++) {
        var s = samples[state.order[k]];
        var best = null;
        s.scores.forEach(function (v) { if (v != null && (best == null || v > best)) best = v; });
        var cells = '<td class="id">' + esc(s.id) + '</td><td class="media">' + mediaCell(s.media) + '</td><td>' +
          (s.question ? '<div class="q">' + esc(s.question) + '</div>' : '') +
          refsList(s.refs) + '</td>';
        for (var r = 0; r < runs.length; r++) {
          var v = s.scores[r];
          cells += '<td class="pred' + (runs.length > 1 && v != null && v === best ? ' best' : '') + '" data-run="' + r +
            '">' + (s.preds[r] == null ? '<span class="note">(none)</span>' : esc(s.preds[r])) +
            '<span class="score">' + esc(data.score_name) + ' ' + fmt(v) + '</span></td>';
        }
        html.push('<tr data-id="' + esc(s.id) + '"' + (s.disagree ? ' class="disagree"' : '') + '>' + cells + '</tr>');
      }
      tbody.innerHTML = html.join('');
      info.textContent = 'page ' + (state.page + 1) + ' of ' + pages + ' · ' + n + ' sample' + (n === 1 ? '' : 's') +
        (dis.checked ? ' where runs disagree' : '') + ' (of ' + samples.length + ')';
      root.querySelector('.prev').disabled = state.page === 0;
      root.querySelector('.next').disabled = state.page >= pages - 1;
    }
    sortSel.addEventListener('change', recompute);
    dis.addEventListener('change', recompute);
    sizeSel.addEventListener('change', function () { state.page = 0; render(); });
    root.querySelector('.prev').addEventListener('click', function () { state.page--; render(); });
    root.querySelector('.next').addEventListener('click', function () { state.page++; render(); });
    recompute();
    root.dataset.readyMs = Math.round(performance.now());  // since navigation start (the benchmark reads it)
    root.dataset.ready = '1';
  });
})();
"""
