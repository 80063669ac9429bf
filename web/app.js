// softreg's dashboard: the runs table, a run's live curves (Server-Sent Events), runs compared, the
// confusion matrix with its test images, the pictures, and a pad to draw on and predict from.
// Everything comes from the JSON API of softreg serve (see the README); names from run folders are
// put into the page as text, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const COLORS = ['#2f6fdf', '#d9480f', '#2b8a3e', '#7048e8', '#c2255c', '#0b7285', '#e67700', '#5c940d'];
// The seed's Animator draws these three; val_* join them when the run holds out a validation set.
const CURVES = [
  ['train_loss', 'train loss', '#2f6fdf'],
  ['train_acc', 'train acc', '#d9480f', [6, 4]],
  ['test_acc', 'test acc', '#2b8a3e', [2, 3]],
  ['val_loss', 'val loss', '#7048e8'],
  ['val_acc', 'val acc', '#c2255c', [6, 4]],
];

const state = {
  runs: [],
  selected: null,           // the run shown below the table (its summary)
  choices: 0,               // selectRun calls so far: a call that a later one overtook gives way
  rows: [],                 // its metrics.csv rows
  events: null,             // the EventSource of a run in training
  compare: new Set(),       // ids ticked in the table
  metricsCache: new Map(),  // id -> {date, rows}
  curves: null,
  compareChart: null,
  predicting: false,
  predictAgain: false,
};

async function getJSON(url, options) {
  const response = await fetch(url, Object.assign({cache: 'no-store'}, options));
  const body = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

const api = (id, tail = '') => `/api/runs/${encodeURIComponent(id)}${tail}`;
const number = (x, digits = 4) => (typeof x === 'number' ? x.toFixed(digits) : '–');
function recipeText(r) {
  if (!r) return '–';
  let text = `${r.optimizer || 'sgd'}, lr ${r.lr}, batch ${r.batch_size}`;
  if (r.l2) text += `, l2 ${r.l2}`;
  if (r.standardize) text += ', standardized';
  return text;
}
function element(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}
function hashParams() { return new URLSearchParams(location.hash.slice(1)); }

// ---- The runs table -----------------------------------------------------------------------------

function renderRuns() {
  const body = $('runs').tBodies[0];
  body.replaceChildren();
  $('no-runs').hidden = state.runs.length > 0;
  for (const run of state.runs) {
    const row = document.createElement('tr');
    row.dataset.run = run.id;
    if (state.selected && state.selected.id === run.id) row.className = 'selected';
    const tick = document.createElement('input');
    tick.type = 'checkbox';
    tick.checked = state.compare.has(run.id);
    tick.setAttribute('aria-label', `compare ${run.id}`);
    tick.addEventListener('click', (e) => e.stopPropagation());
    tick.addEventListener('change', () => {
      // Kept in the address, so a link shows the same comparison.
      const params = hashParams();
      if (tick.checked)
        state.compare.add(run.id);
      else
        state.compare.delete(run.id);
      const ids = [...state.compare];
      if (ids.length) params.set('compare', ids.join(','));
      else params.delete('compare');
      history.replaceState(null, '', `#${params}`);
      drawComparison();
    });
    const first = element('td');
    first.append(tick);
    row.append(first, element('td', run.id), stateCell(run.state), element('td', recipeText(run.recipe)));
    const last = run.last || {};
    const planned = run.recipe && run.recipe.epochs ? `/${run.recipe.epochs}` : '';
    row.append(
        element('td', `${run.epochs_done}${planned}`, 'num'), element('td', number(last.train_loss), 'num'),
        element('td', number(last.train_acc), 'num'), element('td', number(last.test_acc), 'num'),
        element('td', run.date ? new Date(run.date).toLocaleString() : '–'),
        element('td', number(run.seconds, 2), 'num'));
    row.addEventListener('click', () => selectRun(run.id));
    body.append(row);
  }
}

function stateCell(name) {
  const cell = element('td');
  cell.append(element('span', name, `state ${name}`));
  return cell;
}

async function refreshRuns() {
  try {
    const data = await getJSON('/api/runs');
    $('root').textContent = data.root;
    state.runs = data.runs;
    $('status').textContent = '';
  } catch (e) {
    $('status').textContent = `the server does not answer (${e.message})`;
    return;
  }
  renderRuns();
  if (!state.selected) {
    const compare = hashParams().get('compare');
    if (compare) for (const id of compare.split(',')) state.compare.add(id);
    const wanted = hashParams().get('run');
    const newest = [...state.runs].sort((a, b) => (b.date || '').localeCompare(a.date || ''))[0];
    const id = wanted || (newest && newest.id);
    if (id) await selectRun(id);
    return;
  }
  const current = state.runs.find((r) => r.id === state.selected.id);
  if (!current) return;
  const was = state.selected.state;
  const wanted = hashParams().get('run');
  if ((current.state !== was || current.date !== state.selected.date) && (!wanted || wanted === current.id)) {
    // A run that finished (pictures drawn) or started again (resumed): show it afresh, unless another
    // run has been chosen meanwhile (its selectRun may still be waiting for the server).
    if (current.state !== 'training' || !state.events) await selectRun(current.id, {keepPad: true});
  }
  if (state.compare.size > 0) drawComparison();
}

// ---- One run ------------------------------------------------------------------------------------

async function selectRun(id, {keepPad = false} = {}) {
  const choice = ++state.choices;
  const overtaken = () => choice !== state.choices;
  let summary;
  try {
    summary = await getJSON(api(id));
  } catch (e) {
    if (!overtaken()) $('status').textContent = `run ${id}: ${e.message}`;
    return;
  }
  if (overtaken()) return;
  state.selected = summary;
  const params = hashParams();
  if (params.get('run') !== id) {
    params.set('run', id);
    params.delete('test');
    history.replaceState(null, '', `#${params}`);
  }
  renderRuns();
  $('run-section').hidden = false;
  $('run-id').textContent = id;
  $('run-state').textContent = summary.state;
  $('run-state').className = `state ${summary.state}`;
  $('run-recipe').textContent = recipeText(summary.recipe);
  // The run's note (summary.json): a model no better than answering one class, and what to try.
  $('run-note').textContent = typeof summary.note === 'string' ? `Note: ${summary.note}` : '';
  $('run-note').hidden = !$('run-note').textContent;

  if (state.events) {
    state.events.close();
    state.events = null;
  }
  const rows = await getJSON(api(id, '/metrics')).catch(() => []);
  if (overtaken()) return;
  state.rows = rows;
  drawCurves();
  if (summary.state === 'training') followEpochs(id);
  drawComparison();
  showPictures(summary);
  const images = summary.input && summary.input.kind === 'images';
  $('draw-card').hidden = !images;
  if (summary.files.includes('model.safetensors'))
    loadConfusion(id);
  else
    $('confusion').replaceChildren();
  const test = params.get('test');
  if (images && test !== null && /^\d+$/.test(test)) {
    await loadTestImage(Number(test));
  } else if (images && !keepPad) {
    clearPad();
  } else if (images) {
    predictFromPad();
  }
}

function followEpochs(id) {
  const last = state.rows.length ? state.rows[state.rows.length - 1].epoch : 0;
  const source = new EventSource(api(id, `/events?after=${last}`));
  state.events = source;
  source.addEventListener('epoch', (event) => {
    const row = JSON.parse(event.data);
    if (state.selected.id !== id) return;
    if (state.rows.length && row.epoch <= state.rows[state.rows.length - 1].epoch) return;
    state.rows.push(row);
    drawCurves();
    refreshRuns();
  });
  source.addEventListener('end', () => {
    source.close();
    if (state.events === source) state.events = null;
    refreshRuns();
  });
}

function drawCurves() {
  const rows = state.rows;
  const labels = rows.map((r) => r.epoch);
  const datasets = CURVES.filter(([key]) => rows.some((r) => typeof r[key] === 'number'))
                       .map(([key, label, color, dash]) => ({
                              label,
                              data: rows.map((r) => r[key]),
                              borderColor: color,
                              backgroundColor: color,
                              borderDash: dash || [],
                              pointRadius: 3,
                              tension: 0,
                            }));
  const epochs = state.selected && state.selected.recipe ? state.selected.recipe.epochs : undefined;
  if (!state.curves) {
    state.curves = new Chart($('curves'), {
      type: 'line',
      data: {labels, datasets},
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: {mode: 'index', intersect: false},
        scales: {x: {title: {display: true, text: 'epoch'}}, y: {suggestedMin: 0.3, suggestedMax: 0.9}},
      },
    });
  } else {
    state.curves.data.labels = labels;
    state.curves.data.datasets = datasets;
    state.curves.update();
  }
  // The seed's x axis runs over all epochs from the start, so a live chart fills in from the left.
  if (epochs && labels.length < epochs) {
    state.curves.data.labels = Array.from({length: epochs}, (_, i) => i + 1);
    state.curves.update();
  }
  $('curves').dataset.points = String(rows.length);
  const table = $('metrics-table');
  table.replaceChildren();
  if (!rows.length) return;
  const keys = Object.keys(rows[0]);
  const head = element('tr');
  for (const k of keys)
    head.append(element('th', k));
  table.append(head);
  for (const r of rows) {
    const tr = element('tr');
    for (const k of keys)
      tr.append(element('td', k === 'epoch' ? String(r[k]) : number(r[k])));
    table.append(tr);
  }
}

async function metricsOf(id) {
  const run = state.runs.find((r) => r.id === id);
  const date = run ? run.date : null;
  const cached = state.metricsCache.get(id);
  if (cached && cached.date === date && run && run.state !== 'training') return cached.rows;
  const rows = await getJSON(api(id, '/metrics')).catch(() => []);
  state.metricsCache.set(id, {date, rows});
  return rows;
}

async function drawComparison() {
  const metric = $('compare-metric').value;
  const ids = [...new Set([...(state.selected ? [state.selected.id] : []), ...state.compare])];
  const series = await Promise.all(ids.map(async (id) => [id, await metricsOf(id)]));
  const longest = Math.max(0, ...series.map(([, rows]) => rows.length));
  const datasets = series.map(([id, rows], i) => ({
                                label: id,
                                data: rows.map((r) => ({x: r.epoch, y: r[metric]})),
                                borderColor: COLORS[i % COLORS.length],
                                backgroundColor: COLORS[i % COLORS.length],
                                pointRadius: 2,
                              }));
  const labels = Array.from({length: longest}, (_, i) => i + 1);
  if (!state.compareChart) {
    state.compareChart = new Chart($('compare'), {
      type: 'line',
      data: {labels, datasets},
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        scales: {x: {type: 'linear', title: {display: true, text: 'epoch'}, ticks: {precision: 0}}}
      },
    });
  } else {
    state.compareChart.data.labels = labels;
    state.compareChart.data.datasets = datasets;
    state.compareChart.update();
  }
  $('compare').dataset.runs = String(datasets.length);
}

function showPictures(summary) {
  const version = encodeURIComponent(summary.date || '');
  for (const [card, img, file] of [
           ['weights-card', 'weights', 'weights.png'], ['grid-card', 'grid', 'predictions.png']]) {
    const present = summary.files.includes(file);
    $(card).hidden = !present;
    if (present) $(img).src = api(summary.id, `/files/${file}?v=${version}`);
  }
}

// ---- The confusion matrix -----------------------------------------------------------------------

async function loadConfusion(id) {
  const box = $('confusion');
  let data;
  try {
    data = await getJSON(api(id, '/confusion'));
  } catch (e) {
    box.replaceChildren(element('p', e.message, 'error'));
    return;
  }
  if (state.selected.id !== id) return;
  const table = element('table');
  table.dataset.run = id;  // whose matrix this is, while another run's may still be on the page
  const head = element('tr');
  head.append(element('th', `acc ${number(data.accuracy)}`));
  for (const name of data.classes)
    head.append(element('th', name));
  table.append(head);
  data.matrix.forEach((counts, t) => {
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    const tr = element('tr');
    tr.append(element('th', data.classes[t], 'true'));
    counts.forEach((count, p) => {
      const td = element('td', String(count));
      const share = count / total;
      td.style.background = t === p ? `rgba(43, 138, 62, ${0.15 + 0.85 * share})` :
                                      `rgba(198, 40, 40, ${Math.min(1, 4 * share)})`;
      if (share > 0.5) td.style.color = '#fff';
      td.title = `true ${data.classes[t]}, predicted ${data.classes[p]}: ${count}`;
      td.dataset.cell = `${t},${p}`;
      td.addEventListener('click', () => showCell(id, t, p, data, td));
      tr.append(td);
    });
    table.append(tr);
  });
  // The same run's matrix again (the run finished, or was chosen again): its picked cell stays picked,
  // its images shown afresh.
  const shown = box.querySelector('table');
  const picked = shown && shown.dataset.run === id ? shown.querySelector('td.picked') : null;
  box.replaceChildren(table);
  const again = picked && table.querySelector(`td[data-cell="${picked.dataset.cell}"]`);
  if (again) {
    again.click();
  } else {
    $('cell').replaceChildren();
  }
}

async function showCell(id, t, p, data, td) {
  for (const picked of document.querySelectorAll('#confusion td.picked'))
    picked.classList.remove('picked');
  td.classList.add('picked');
  const cell = $('cell');
  const answer = await getJSON(api(id, `/confusion/${t}/${p}`));
  if (state.selected.id !== id) return;  // another run was chosen meanwhile
  const title = `${answer.count} test image${answer.count === 1 ? '' : 's'} of ${
      data.classes[t]} predicted as ${data.classes[p]}`;
  cell.replaceChildren(element(
      'p', answer.count > answer.indices.length ? `${title} (the first ${answer.indices.length})` : title));
  if (!data.images) return;
  for (const index of answer.indices) {
    const img = element('img');
    img.src = api(id, `/test-images/${index}.png`);
    img.alt = img.title = `test image ${index}`;
    img.dataset.index = index;
    img.addEventListener('click', () => loadTestImage(index));
    cell.append(img);
  }
}

// ---- Draw to predict ----------------------------------------------------------------------------

const pad = $('pad');
const context = pad.getContext('2d', {willReadFrequently: true});
const background = () => ($('invert').checked ? '#fff' : '#000');
const ink = () => ($('invert').checked ? '#000' : '#fff');

function clearPad() {
  context.fillStyle = background();
  context.fillRect(0, 0, pad.width, pad.height);
  $('top').replaceChildren();
  $('top').dataset.input = '';
  $('predict-error').textContent = '';
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [
    (event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height
  ];
}

let drawing = null;
pad.addEventListener('pointerdown', (event) => {
  pad.setPointerCapture(event.pointerId);
  drawing = padPoint(event);
  $('top').dataset.input = 'drawing';
  stroke(drawing, drawing);
});
pad.addEventListener('pointermove', (event) => {
  if (!drawing) return;
  const next = padPoint(event);
  stroke(drawing, next);
  drawing = next;
});
for (const end of ['pointerup', 'pointercancel'])
  pad.addEventListener(end, () => {
    drawing = null;
  });

function stroke(from, to) {
  context.strokeStyle = ink();
  context.lineWidth = 22;  // about two pixels of the 28x28 input, like a garment's edge
  context.lineCap = context.lineJoin = 'round';
  context.beginPath();
  context.moveTo(...from);
  context.lineTo(...to);
  context.stroke();
  predictFromPad();
}

// One request in flight at a time; strokes drawn meanwhile are sent together when it returns.
function predictFromPad() {
  if (!state.selected) return;
  if (state.predicting) {
    state.predictAgain = true;
    return;
  }
  state.predicting = true;
  pad.toBlob(async (blob) => {
    try {
      const invert = $('invert').checked ? 1 : 0;
      const k = Math.min(10, (state.selected.classes || []).length || 10);
      const answer = await getJSON(
          api(state.selected.id, `/predict?k=${k}&invert=${invert}`),
          {method: 'POST', body: blob, headers: {'Content-Type': 'image/png'}});
      showTop(answer.top);
      $('predict-error').textContent = '';
    } catch (e) {
      $('predict-error').textContent = e.message;
    } finally {
      state.predicting = false;
      if (state.predictAgain) {
        state.predictAgain = false;
        predictFromPad();
      }
    }
  }, 'image/png');
}

function showTop(top) {
  const list = $('top');
  list.replaceChildren();
  for (const {class: c, name, prob} of top) {
    const li = element('li');
    li.dataset.class = c;
    li.dataset.name = name;
    const bar = element('span', undefined, 'bar');
    bar.style.width = `${(100 * prob).toFixed(1)}%`;
    const track = element('span');
    track.append(bar);
    li.append(element('span', name, 'name'), track, element('span', `${(100 * prob).toFixed(1)}%`, 'prob'));
    list.append(li);
  }
}

// An image onto the pad, fitted and centred on the background (transparent parts become background).
function drawOnPad(image, smooth) {
  context.fillStyle = background();
  context.fillRect(0, 0, pad.width, pad.height);
  const scale = Math.min(pad.width / image.width, pad.height / image.height);
  const w = image.width * scale, h = image.height * scale;
  context.imageSmoothingEnabled = smooth;
  context.drawImage(image, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  context.imageSmoothingEnabled = true;
  predictFromPad();
}

async function loadTestImage(index) {
  const id = state.selected.id;
  try {
    const response = await fetch(api(id, `/test-images/${index}.png`));
    if (!response.ok) throw new Error((await response.json()).error);
    const image = await createImageBitmap(await response.blob());
    $('invert').checked = false;
    $('top').dataset.input = `test:${index}`;
    const params = hashParams();
    params.set('test', String(index));
    history.replaceState(null, '', `#${params}`);
    drawOnPad(image, false);
  } catch (e) {
    $('predict-error').textContent = `test image ${index}: ${e.message}`;
  }
}

async function loadFile(file) {
  try {
    const image = await createImageBitmap(file);
    $('top').dataset.input = file.name;
    drawOnPad(image, true);
  } catch (e) {
    $('predict-error').textContent = `${file.name}: not an image this browser can read`;
  }
}

$('clear').addEventListener('click', clearPad);
$('invert').addEventListener('change', () => {
  // The pad keeps its drawing, inverted, so what it shows is always what is sent.
  const pixels = context.getImageData(0, 0, pad.width, pad.height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    for (let c = 0; c < 3; ++c)
      pixels.data[i + c] = 255 - pixels.data[i + c];
  }
  context.putImageData(pixels, 0, 0);
  predictFromPad();
});
$('file').addEventListener('change', (event) => {
  if (event.target.files[0]) loadFile(event.target.files[0]);
});
pad.addEventListener('dragover', (event) => {
  event.preventDefault();
  pad.classList.add('dragging');
});
pad.addEventListener('dragleave', () => pad.classList.remove('dragging'));
pad.addEventListener('drop', (event) => {
  event.preventDefault();
  pad.classList.remove('dragging');
  if (event.dataTransfer.files[0]) loadFile(event.dataTransfer.files[0]);
});
$('compare-metric').addEventListener('change', drawComparison);

// A link to another run (or the address edited by hand) selects it without reloading the page.
window.addEventListener('hashchange', () => {
  const id = hashParams().get('run');
  if (id && (!state.selected || state.selected.id !== id)) selectRun(id);
});

clearPad();
refreshRuns();
setInterval(refreshRuns, 3000);
