// Sorting and filtering for the leaderboard tables. Rows carry their sort keys
// in data-value attributes, so nothing here parses displayed text; missing
// values always sort last. The index page also recomputes the average over
// the task columns left visible by the task filter.
(function () {
  "use strict";

  function num(v) { return v === "" || v === undefined ? null : parseFloat(v); }

  function sortTable(table, th) {
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.dataset.type === "num";
    var current = th.getAttribute("aria-sort");
    // First click: best first (descending unless lower is better), then toggle.
    var desc = current ? current === "ascending" : (numeric && th.dataset.desc !== "0");
    table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
      if (numeric) { x = num(x); y = num(y); } else { x = x || null; y = y || null; }
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      var c = numeric ? x - y : x.localeCompare(y);
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th[data-col]").forEach(function (th) {
      th.tabIndex = 0;
      th.classList.add("sort");
      var handler = function (ev) {
        if (ev.target.closest("a")) return;  // task-name links still navigate
        sortTable(table, th);
      };
      th.addEventListener("click", handler);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") handler(ev); });
    });
  });

  var board = document.querySelector("table.filterable");
  var modelFilter = document.getElementById("model-filter");
  var count = document.getElementById("row-count");
  var taskFilter = document.getElementById("task-filter");

  function shownTasks() {
    if (!taskFilter) return null;
    var on = {};
    taskFilter.querySelectorAll("input[type=checkbox]").forEach(function (cb) { on[cb.value] = cb.checked; });
    return on;
  }

  // Wilson score interval (95%) of a proportion p over n trials; n may be fractional.
  function wilson(p, n) {
    var z = 1.959963984540054, z2n = z * z / n;
    var centre = (p + z2n / 2) / (1 + z2n);
    var half = z * Math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n);
    return [p === 0 ? 0 : Math.max(0, centre - half), p === 1 ? 1 : Math.min(1, centre + half)];
  }

  // The average of the shown cells and its interval, as leaderboards/builder.py's _average.
  function average(cells) {
    var k = cells.length;
    if (k === 0) return null;
    var value = 0, varSum = 0, seMissing = false, wilsonOk = true, invN = 0, scale = num(cells[0].scale);
    cells.forEach(function (c) {
      value += num(c.value) / k;
      var se = num(c.se), n = num(c.n);
      if (se === null) seMissing = true; else varSum += se * se;
      if (n === null || num(c.scale) !== scale) wilsonOk = false; else invN += 1 / n;
    });
    if (k === 1) return {value: value, low: num(cells[0].lo), high: num(cells[0].hi)};
    if (wilsonOk) {
      var w = wilson(Math.min(1, Math.max(0, value / scale)), k * k / invN);
      return {value: value, low: w[0] * scale, high: w[1] * scale};
    }
    if (seMissing) return {value: value, low: null, high: null};
    var half = 1.959963984540054 * Math.sqrt(varSum) / k;
    return {value: value, low: value - half, high: value + half};
  }

  function recomputeAverages(on) {
    var avgCol = board.querySelector("th[data-col=average]");
    if (!avgCol) return;
    var decimals = parseInt(board.dataset.decimals, 10);
    if (isNaN(decimals)) decimals = 1;
    var bounds = [];  // [row, low, high] of each average, for the rank
    Array.prototype.forEach.call(board.tBodies[0].rows, function (row) {
      var cells = [], missing = false;
      row.querySelectorAll("td[data-task]").forEach(function (td) {
        if (!on[td.dataset.task] || td.dataset.avg !== "1") return;
        if (num(td.dataset.value) === null) { missing = true; return; }
        cells.push(td.dataset);
      });
      var cell = row.querySelector("td.avg");
      var v = cell.querySelector(".v"), ci = cell.querySelector(".ci");
      var avg = missing ? null : average(cells);
      if (avg === null) {
        cell.dataset.value = ""; v.textContent = "—"; ci.textContent = "";
      } else {
        cell.dataset.value = String(avg.value);
        v.textContent = avg.value.toFixed(decimals);
        ci.textContent = avg.low === null ? "" : "[" + avg.low.toFixed(decimals) + ", " + avg.high.toFixed(decimals) + "]";
        bounds.push(avg.low === null ? [row, avg.value, avg.value] : [row, avg.low, avg.high]);
      }
    });
    // Rank = 1 + the number of models whose average is *significantly* higher
    // (their CI lies entirely above this one's), so statistical ties share a rank.
    Array.prototype.forEach.call(board.tBodies[0].rows, function (row) {
      var cell = row.querySelector("td.rank");
      if (!cell) return;
      var mine = bounds.filter(function (b) { return b[0] === row; })[0];
      var rank = mine ? 1 + bounds.filter(function (b) { return b[1] > mine[2]; }).length : null;
      cell.dataset.value = rank === null ? "" : String(rank);
      cell.textContent = rank === null ? "—" : String(rank);
    });
    var sorted = board.querySelector("th[aria-sort]");
    if (sorted && sorted.dataset.col === "average") {  // keep the average order current
      sorted.setAttribute("aria-sort", sorted.getAttribute("aria-sort") === "descending" ? "ascending" : "descending");
      sortTable(board, sorted);
    }
  }

  function applyFilters() {
    if (!board) return;
    var q = modelFilter ? modelFilter.value.trim().toLowerCase() : "";
    var shown = 0;
    Array.prototype.forEach.call(board.tBodies[0].rows, function (row) {
      var hide = q !== "" && row.dataset.model.indexOf(q) < 0;
      row.hidden = hide;
      if (!hide) shown += 1;
    });
    if (count) count.textContent = shown + (shown === 1 ? " model" : " models");
    var on = shownTasks();
    if (on) {
      board.querySelectorAll("[data-task]").forEach(function (cell) { cell.hidden = !on[cell.dataset.task]; });
      recomputeAverages(on);
    }
  }

  if (modelFilter) modelFilter.addEventListener("input", applyFilters);
  if (taskFilter) {
    taskFilter.addEventListener("change", applyFilters);
    taskFilter.querySelectorAll("button.group").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var members = btn.dataset.tasks.split(" ");
        taskFilter.querySelectorAll("input[type=checkbox]").forEach(function (cb) {
          cb.checked = members.indexOf(cb.value) >= 0;
        });
        applyFilters();
      });
    });
  }
  if (board && board.querySelector("th[data-col=average]")) {
    board.querySelector("th[data-col=average]").setAttribute("aria-sort", "descending");
  }
  applyFilters();
})();
