// Per-sample browser. The page embeds the sample index and the first chunk of
// records (window.LB_DATA); further chunks are JS files calling LB.chunk(k,
// rows), loaded with <script> tags only when a page needs them, because
// fetch() of file:// URLs is blocked in Chromium. Data is inserted with
// textContent only: model output is text, never markup.
(function () {
  "use strict";
  var root = document.getElementById("browser");
  var data = window.LB_DATA;
  var base = data.base;
  var pageSize = parseInt(root.dataset.pageSize, 10) || 20;
  var chunkSize = data.chunkSize;
  var index = data.index;  // [i, id, subtask, status, verdict]
  var filtered = [];       // positions into index after filters
  var chunks = {0: data.chunk0};  // k -> rows
  var pending = {};        // k -> Promise
  var page = 0;
  var LB = (window.LB = window.LB || {});

  LB.chunk = function (k, rows) { chunks[k] = rows; };

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = function () { resolve(); };
      s.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(s);
    });
  }

  function loadChunk(k) {
    if (chunks[k]) return Promise.resolve(chunks[k]);
    if (!pending[k]) {
      pending[k] = loadScript(base + "-c" + k + ".js").then(function () { return chunks[k]; });
    }
    return pending[k];
  }

  function el(id) { return document.getElementById(id); }

  function applyFilters() {
    var sub = el("f-subtask").value, st = el("f-status").value, ver = el("f-verdict").value;
    var q = el("f-id").value.trim().toLowerCase();
    filtered = [];
    for (var j = 0; j < index.length; j++) {
      var r = index[j];
      if (sub && r[2] !== sub) continue;
      if (st && r[3] !== st) continue;
      if (ver === "other" ? (r[4] === "pass" || r[4] === "fail") : (ver && r[4] !== ver)) continue;
      if (q && r[1].toLowerCase().indexOf(q) < 0) continue;
      filtered.push(j);
    }
  }

  function pages() { return Math.max(1, Math.ceil(filtered.length / pageSize)); }

  function setText(node, selector, text) { node.querySelector(selector).textContent = text; }

  function renderSample(rec) {
    var node = el("sample-tpl").content.firstElementChild.cloneNode(true);
    node.dataset.sampleId = rec.id;
    setText(node, ".sid", rec.id);
    setText(node, ".sub", rec.subtask);
    var status = node.querySelector(".status");
    status.textContent = rec.status;
    status.classList.add("st-" + (rec.status === "scored" ? "ok" : "bad"));
    var verdict = node.querySelector(".verdict");
    verdict.textContent = rec.verdict || "no verdict";
    verdict.classList.add("v-" + (rec.verdict === "pass" ? "pass" : rec.verdict === "fail" ? "fail" : "other"));
    var msgs = node.querySelector(".messages");
    rec.prompt.forEach(function (m) {
      var role = document.createElement("div");
      role.className = "role";
      role.textContent = m[0];
      var pre = document.createElement("pre");
      pre.textContent = m[1];
      msgs.appendChild(role);
      msgs.appendChild(pre);
    });
    var outs = node.querySelector(".outputs");
    if (!rec.outputs.length) {
      var none = document.createElement("p");
      none.className = "small";
      none.textContent = "(no output)";
      outs.appendChild(none);
    }
    rec.outputs.forEach(function (text, n) {
      var pre = document.createElement("pre");
      pre.className = "output";
      pre.textContent = text;
      var name = rec.labels ? rec.labels[n] : (rec.outputs.length > 1 ? "completion " + (n + 1) : "");
      if (name || rec.finish[n]) {
        var label = document.createElement("div");
        label.className = "small";
        label.textContent = (name ? name + " " : "") + (rec.finish[n] ? "(finish: " + rec.finish[n] + ")" : "");
        outs.appendChild(label);
      }
      outs.appendChild(pre);
    });
    setText(node, ".answer", rec.answer || "(none)");
    setText(node, ".target", rec.target);
    setText(node, ".metrics", JSON.stringify(rec.metrics));
    setText(node, ".detail", rec.detail);
    setText(node, ".error", rec.error);
    if (!rec.detail) node.querySelector(".detail-box").hidden = true;
    if (!rec.error) node.querySelector(".error-box").hidden = true;
    return node;
  }

  function render() {
    var n = pages();
    page = Math.min(Math.max(page, 0), n - 1);
    var slice = filtered.slice(page * pageSize, (page + 1) * pageSize);
    var need = {};
    slice.forEach(function (j) { need[Math.floor(index[j][0] / chunkSize)] = true; });
    el("page-info").textContent = "loading…";
    var wanted = page;
    Promise.all(Object.keys(need).map(function (k) { return loadChunk(+k); })).then(function () {
      if (wanted !== page) return;  // the user moved on meanwhile
      root.replaceChildren();
      slice.forEach(function (j) {
        var i = index[j][0];
        root.appendChild(renderSample(chunks[Math.floor(i / chunkSize)][i % chunkSize]));
      });
      if (!slice.length) {
        var p = document.createElement("p");
        p.textContent = "No samples match these filters.";
        root.appendChild(p);
      }
      el("page-info").textContent = "Page " + (page + 1) + " of " + n + " · " + filtered.length + " samples";
      el("page-input").value = page + 1;
      el("page-input").max = n;
      el("prev").disabled = page === 0;
      el("next").disabled = page >= n - 1;
      root.dataset.page = String(page + 1);
      root.dataset.ready = "1";
    }, function (err) {
      el("page-info").textContent = err.message;
    });
    if (location.hash !== "#page=" + (page + 1)) history.replaceState(null, "", "#page=" + (page + 1));
  }

  function go(p) { page = p; root.dataset.ready = "0"; render(); }

  function refilter() { applyFilters(); go(0); }

  ["f-subtask", "f-status", "f-verdict"].forEach(function (id) { el(id).addEventListener("change", refilter); });
  el("f-id").addEventListener("input", refilter);
  el("prev").addEventListener("click", function () { go(page - 1); });
  el("next").addEventListener("click", function () { go(page + 1); });
  el("page-input").addEventListener("change", function () { go((parseInt(el("page-input").value, 10) || 1) - 1); });

  applyFilters();
  var m = /^#page=(\d+)$/.exec(location.hash);
  go(m ? parseInt(m[1], 10) - 1 : 0);
})();
