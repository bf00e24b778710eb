// Shared by every dashboard page. Text from the lake only ever goes into the page as text nodes, never as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}
function fmt(v, digits) {  // digits undefined: an integer as it is, any other number to 3 decimals
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (digits === undefined) return Number.isInteger(v) ? String(v) : v.toFixed(3);
  return v.toFixed(digits);
}
function compare(a, b) {  // nulls last, whatever the direction
  if (a === null || a === undefined) return (b === null || b === undefined) ? 0 : 1;
  if (b === null || b === undefined) return -1;
  return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
}
function sortableTable(columns, rows, options) {
  // columns: [{key, label, num, link, title}]; rows: objects. A click on a header sorts by it (again: the other
  // way); redraw(rows, offset, size) shows rows[offset, offset + size) of the sorted rows. Returns the <table>.
  const table = el("table", {id: options.id || ""});
  const head = el("tr");
  const body = el("tbody");
  let key = options.sortKey, dir = options.sortDir || 1, offset = 0, size = options.size || 0;
  function draw() {
    const order = (a, b) => { const x = a[key], y = b[key]; return x == null || y == null ? compare(x, y) : dir * compare(x, y); };
    const sorted = key ? [...rows].sort(order) : rows;
    body.replaceChildren(...sorted.slice(offset, size ? offset + size : sorted.length).map(r => el("tr", {},
      ...columns.map(c => el("td", {class: (c.num ? "num " : "") + "col-" + c.key},
        c.link ? el("a", {href: c.link(r), text: fmt(r[c.key], c.digits)}) : fmt(r[c.key], c.digits))))));
    for (const th of head.children) th.classList.remove("sorted-asc", "sorted-desc");
    const i = columns.findIndex(c => c.key === key);
    if (i >= 0) head.children[i].classList.add(dir > 0 ? "sorted-asc" : "sorted-desc");
  }
  for (const c of columns) {
    const th = el("th", {class: "sortable", "data-key": c.key, title: c.title || ""}, c.label);
    th.addEventListener("click", () => { dir = key === c.key ? -dir : (c.num ? -1 : 1); key = c.key; if (options.onSort) options.onSort(key, dir); else draw(); });
    head.append(th);
  }
  table.append(el("thead", {}, head), body);
  table.redraw = (newRows, newOffset, newSize) => { rows = newRows; offset = newOffset || 0; size = newSize || 0; draw(); };
  draw();
  return table;
}
