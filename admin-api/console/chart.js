// Incidents per day by category: stacked bars in inline SVG, a legend, and the same figures as a
// table for screen readers and for anyone who wants the numbers. No chart library: this is small.
import { h, svg, addDays, formatDay } from './dom.js';

// Okabe–Ito: distinguishable with the common colour-vision deficiencies, and dark enough on white.
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#6B4C9A', '#8C6D1F', '#333333'];
const OTHER = '__other';
const MAX_SERIES = 8;

const dayOf = (value) => String(value).slice(0, 10);

// Days are the school's days (the API groups by its time zone), written dd/mm/yyyy; the axis has
// room for dd/mm only, and dd between month starts.
const dayLabel = (day) => formatDay(day);
const axisLabel = (day, withMonth) => (withMonth ? formatDay(day).slice(0, 5) : day.slice(8, 10));

function niceMax(n) {
  if (n <= 5) return Math.max(n, 1);
  const pow = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * pow >= n) return m * pow;
  return 10 * pow;
}

/**
 * perDay: [{day, category, count, attempts}]; names: Map category → friendly name; from/to:
 * 'YYYY-MM-DD' (inclusive; empty days are drawn as gaps so a quiet week looks quiet).
 * measure 'count' charts incidents as the queue lists them (a repeat folded into an incident is
 * not another one), so a day's bar and the queue filtered to that day give the same number;
 * 'attempts' charts every blocked attempt, and the chart says so. dayHref(day), when given, makes
 * each day in the table a link (to the queue for that day).
 */
export function incidentsChart({ perDay, names = new Map(), from, to, caption = 'Incidents per day by category', measure = 'count', dayHref = null }) {
  const unit = measure === 'attempts' ? ['attempt', 'attempts'] : ['incident', 'incidents'];
  const rows = (perDay ?? []).map((r) => ({ day: dayOf(r.day), category: r.category ?? 'uncategorised', count: Number(measure === 'attempts' ? r.attempts ?? r.count : r.count) || 0 }));
  const attempts = measure === 'count' ? (perDay ?? []).reduce((a, r) => a + (Number(r.attempts) || 0), 0) : 0;
  const first = from ?? rows.map((r) => r.day).sort()[0];
  const last = to ?? rows.map((r) => r.day).sort().at(-1);
  const days = [];
  if (first && last) for (let d = first; d <= last && days.length < 400; d = addDays(d, 1)) days.push(d);

  const totals = new Map();
  for (const r of rows) totals.set(r.category, (totals.get(r.category) ?? 0) + r.count);
  const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([c]) => c);
  // Beyond a handful of colours a legend stops being readable: the long tail becomes "Other".
  const series = ranked.length > MAX_SERIES ? [...ranked.slice(0, MAX_SERIES - 1), OTHER] : ranked;
  const seriesOf = (c) => (series.includes(c) ? c : OTHER);
  const label = (c) => (c === OTHER ? 'Other categories' : names.get(c) ?? c);
  const colour = (c) => PALETTE[series.indexOf(c) % PALETTE.length];

  const grid = new Map(days.map((d) => [d, new Map()]));
  for (const r of rows) {
    if (!grid.has(r.day)) continue;
    const cell = grid.get(r.day);
    const s = seriesOf(r.category);
    cell.set(s, (cell.get(s) ?? 0) + r.count);
  }
  const dayTotal = (d) => [...grid.get(d).values()].reduce((a, b) => a + b, 0);
  const total = days.reduce((a, d) => a + dayTotal(d), 0);
  const max = niceMax(Math.max(0, ...days.map(dayTotal)));

  const W = 760, H = 260, left = 40, right = 10, top = 12, bottom = 34;
  const plotW = W - left - right, plotH = H - top - bottom;
  const slot = days.length ? plotW / days.length : plotW;
  const barW = Math.max(2, Math.min(40, slot * 0.7));
  const y = (v) => top + plotH - (v / max) * plotH;

  const uid = `chart-${Math.random().toString(36).slice(2, 8)}`;
  const busiest = ranked[0];
  const many = (n) => `${n} ${unit[n === 1 ? 0 : 1]}`;
  // Folded repeats are not more incidents, but how often someone went back says something too.
  const repeats = attempts > total ? ` (${attempts} attempts, repeats included)` : '';
  const summary = total === 0
    ? `No ${unit[1]} between ${first ? dayLabel(first) : '…'} and ${last ? dayLabel(last) : '…'}.`
    : `${many(total)}${repeats} from ${dayLabel(first)} to ${dayLabel(last)}. Most frequent category: ${label(busiest)} (${totals.get(busiest)}).`;

  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${uid}-t ${uid}-d`, class: 'chart', preserveAspectRatio: 'xMidYMid meet' },
    svg('title', { id: `${uid}-t` }, caption),
    svg('desc', { id: `${uid}-d` }, summary));

  const ticks = max <= 5 ? Array.from({ length: max + 1 }, (_, i) => i) : [0, max / 4, max / 2, (3 * max) / 4, max];
  for (const t of ticks) {
    chart.append(
      svg('line', { x1: left, x2: W - right, y1: y(t), y2: y(t), class: 'gridline' }),
      svg('text', { x: left - 6, y: y(t) + 4, 'text-anchor': 'end', class: 'axis' }, Number.isInteger(t) ? t : t.toFixed(1)));
  }
  const labelEvery = Math.ceil(days.length / 15);
  days.forEach((d, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let acc = 0;
    const bar = svg('g', { class: 'bar', 'data-day': d });
    for (const s of series) {
      const v = grid.get(d).get(s) ?? 0;
      if (!v) continue;
      bar.append(svg('rect', { x, y: y(acc + v), width: barW, height: Math.max(1, y(acc) - y(acc + v)), fill: colour(s), 'data-category': s },
        svg('title', {}, `${dayLabel(d)}: ${label(s)} ${many(v)}`)));
      acc += v;
    }
    chart.append(bar);
    if (i % labelEvery === 0) {
      chart.append(svg('text', { x: x + barW / 2, y: H - bottom + 16, 'text-anchor': 'middle', class: 'axis' }, axisLabel(d, i === 0 || d.endsWith('-01'))));
    }
  });
  chart.append(svg('line', { x1: left, x2: W - right, y1: y(0), y2: y(0), class: 'baseline' }));

  const legend = h('ul', { class: 'legend', 'aria-label': 'Categories' },
    series.map((s) => h('li', {},
      h('span', { class: 'swatch', 'data-colour': colour(s) }),
      `${label(s)} `, h('span', { class: 'muted' }, `(${s === OTHER ? ranked.slice(MAX_SERIES - 1).reduce((a, c) => a + totals.get(c), 0) : totals.get(s)})`))));
  // Colour the swatches through the CSSOM so no inline style attribute is needed (strict CSP).
  legend.querySelectorAll('.swatch').forEach((el) => { el.style.backgroundColor = el.dataset.colour; });

  const table = h('table', { class: 'data compact' },
    h('caption', {}, `${caption}, as a table`),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), series.map((s) => h('th', { scope: 'col' }, label(s))), h('th', { scope: 'col' }, 'Total'))),
    h('tbody', {}, days.filter((d) => dayTotal(d) > 0).map((d) => h('tr', { 'data-day': d },
      h('th', { scope: 'row' }, dayHref ? h('a', { href: dayHref(d) }, dayLabel(d)) : dayLabel(d)),
      series.map((s) => h('td', { class: 'num' }, grid.get(d).get(s) ?? 0)),
      h('td', { class: 'num' }, dayTotal(d))))));

  return h('figure', { class: 'chart-figure' },
    h('figcaption', {}, caption, h('span', { class: 'muted' }, ` — ${summary}`)),
    total === 0 ? h('p', { class: 'empty' }, 'Nothing to chart for these dates.') : [chart, legend],
    total === 0 ? null : h('details', {}, h('summary', {}, 'Show these figures as a table'), table));
}
