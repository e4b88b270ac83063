/* MedIQA pages: sortable, filterable, paginated tables over JSON rows, and a marker that
   shows a clicked scan on every figure. No library, no network. */
(function () {
  "use strict";

  function format(value, type) {
    if (value === null || value === undefined) return "";
    if (type === "number") {
      if (Number.isInteger(value) || Math.abs(value) >= 1000) return String(value);
      return String(Number(value.toPrecision(4)));
    }
    return String(value);
  }

  function compare(a, b, type) {
    var aMissing = a === null || a === undefined || a === "";
    var bMissing = b === null || b === undefined || b === "";
    if (aMissing || bMissing) return aMissing === bMissing ? 0 : (aMissing ? 1 : -1);
    if (type === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function DataTable(root) {
    var data = JSON.parse(document.getElementById(root.dataset.source).textContent);
    var self = this;
    this.root = root;
    this.columns = data.columns;
    this.pageSize = Number(root.dataset.pageSize || 100);
    this.rows = data.rows.map(function (cells, index) {
      return { cells: cells, index: index, link: data.links ? data.links[index] : null,
               text: cells.map(function (c) { return c === null ? "" : String(c); })
                          .join("\u0001").toLowerCase() };
    });
    this.view = this.rows.slice();
    this.page = 0;
    this.sortColumn = -1;
    this.sortDirection = 1;
    this.filterText = "";
    this.choices = {};

    var controls = document.createElement("div");
    controls.className = "mq-controls";
    var search = document.createElement("input");
    search.type = "search";
    search.placeholder = "filter rows (any column)";
    search.className = "mq-filter";
    search.addEventListener("input", function () {
      self.filterText = search.value.trim().toLowerCase();
      self.apply();
    });
    controls.appendChild(search);
    (root.dataset.choices || "").split(",").filter(Boolean).forEach(function (key) {
      var col = self.columns.findIndex(function (c) { return c.key === key; });
      if (col < 0) return;
      var values = {};
      self.rows.forEach(function (r) { if (r.cells[col] !== null) values[r.cells[col]] = 1; });
      var select = document.createElement("select");
      select.className = "mq-choice";
      select.dataset.key = key;
      var all = document.createElement("option");
      all.value = "";
      all.textContent = "all " + self.columns[col].label;
      select.appendChild(all);
      Object.keys(values).sort().forEach(function (v) {
        var option = document.createElement("option");
        option.value = v;
        option.textContent = v;
        select.appendChild(option);
      });
      select.addEventListener("change", function () {
        if (select.value) self.choices[col] = select.value; else delete self.choices[col];
        self.apply();
      });
      controls.appendChild(select);
    });
    this.count = document.createElement("span");
    this.count.className = "muted mq-count";
    controls.appendChild(this.count);
    root.appendChild(controls);

    var wrap = document.createElement("div");
    wrap.className = "mq-wrap";
    var table = document.createElement("table");
    table.className = "mq-table";
    var head = document.createElement("thead");
    var headRow = document.createElement("tr");
    this.headers = this.columns.map(function (column, index) {
      var th = document.createElement("th");
      th.dataset.key = column.key;
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = column.label;
      button.addEventListener("click", function () { self.sortBy(index); });
      th.appendChild(button);
      headRow.appendChild(th);
      return th;
    });
    head.appendChild(headRow);
    table.appendChild(head);
    this.body = document.createElement("tbody");
    table.appendChild(this.body);
    wrap.appendChild(table);
    root.appendChild(wrap);

    var pager = document.createElement("div");
    pager.className = "mq-pager";
    this.previous = document.createElement("button");
    this.previous.type = "button";
    this.previous.textContent = "\u2190 previous";
    this.previous.className = "mq-previous";
    this.previous.addEventListener("click", function () { self.show(self.page - 1); });
    this.next = document.createElement("button");
    this.next.type = "button";
    this.next.textContent = "next \u2192";
    this.next.className = "mq-next";
    this.next.addEventListener("click", function () { self.show(self.page + 1); });
    this.where = document.createElement("span");
    this.where.className = "muted";
    pager.appendChild(this.previous);
    pager.appendChild(this.where);
    pager.appendChild(this.next);
    root.appendChild(pager);
    this.apply();
  }

  DataTable.prototype.apply = function () {
    var text = this.filterText, choices = this.choices;
    this.view = this.rows.filter(function (row) {
      for (var col in choices) {
        if (String(row.cells[col]) !== choices[col]) return false;
      }
      return !text || row.text.indexOf(text) >= 0;
    });
    this.order();
    this.show(0);
  };

  DataTable.prototype.order = function () {
    var col = this.sortColumn, direction = this.sortDirection;
    if (col < 0) return;
    var type = this.columns[col].type;
    this.view.sort(function (a, b) {
      var missingA = a.cells[col] === null, missingB = b.cells[col] === null;
      if (missingA || missingB) return missingA === missingB ? a.index - b.index : (missingA ? 1 : -1);
      return direction * compare(a.cells[col], b.cells[col], type) || a.index - b.index;
    });
  };

  DataTable.prototype.sortBy = function (col) {
    this.sortDirection = this.sortColumn === col ? -this.sortDirection : 1;
    this.sortColumn = col;
    var direction = this.sortDirection;
    this.headers.forEach(function (th, index) {
      if (index === col) th.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    this.order();
    this.show(0);
  };

  DataTable.prototype.show = function (page) {
    var pages = Math.max(1, Math.ceil(this.view.length / this.pageSize));
    this.page = Math.min(Math.max(0, page), pages - 1);
    var start = this.page * this.pageSize;
    var slice = this.view.slice(start, start + this.pageSize);
    var self = this;
    var fragment = document.createDocumentFragment();
    slice.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.dataset.index = row.index;
      row.cells.forEach(function (value, col) {
        var column = self.columns[col];
        var td = document.createElement("td");
        var text = format(value, column.type);
        if (column.type === "number") td.className = "num";
        if (column.key === "grade" && value) {
          var badge = document.createElement("span");
          badge.className = "grade grade-" + value;
          badge.textContent = text;
          td.appendChild(badge);
        } else if (column.key === "status" && value) {
          var status = document.createElement("span");
          status.className = "status-" + value;
          status.textContent = text;
          td.appendChild(status);
        } else if (col === 0 && row.link) {
          var a = document.createElement("a");
          a.href = "#" + row.link;
          a.textContent = text;
          td.appendChild(a);
        } else {
          td.textContent = text;
        }
        td.title = text;
        tr.appendChild(td);
      });
      tr.addEventListener("click", function () { self.select(row, tr); });
      fragment.appendChild(tr);
    });
    this.body.replaceChildren(fragment);
    var shownFrom = this.view.length ? start + 1 : 0;
    this.where.textContent = "rows " + shownFrom + "\u2013" + (start + slice.length) + " of " +
      this.view.length + " (page " + (this.page + 1) + " of " + pages + ")";
    this.count.textContent = this.view.length + " of " + this.rows.length + " rows";
    this.previous.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
  };

  DataTable.prototype.select = function (row, tr) {
    Array.prototype.forEach.call(this.body.querySelectorAll("tr.selected"), function (other) {
      other.classList.remove("selected");
    });
    tr.classList.add("selected");
    var record = {};
    this.columns.forEach(function (column, col) { record[column.key] = row.cells[col]; });
    highlight(record);
    if (row.link && this.root.dataset.follow) {
      window.location.hash = row.link;
    } else if (row.link) {
      var target = document.getElementById(row.link);
      if (target) {
        target.classList.add("flash");
        setTimeout(function () { target.classList.remove("flash"); }, 1500);
      }
    }
  };

  /* Place each figure's marker at the selected scan (geometry comes from the page). */
  function highlight(record) {
    Array.prototype.forEach.call(document.querySelectorAll(".mq-figure[data-geometry]"),
      function (figure) {
        var g = JSON.parse(figure.dataset.geometry);
        var marker = figure.querySelector(".mq-marker");
        var score = record.score;
        if (!marker || score === null || score === undefined) {
          if (marker) marker.style.display = "none";
          return;
        }
        var box = g.box;
        var width = box.right - box.left, height = box.bottom - box.top;
        if (g.kind === "histogram") {
          marker.className = "mq-marker line";
          marker.style.left = 100 * (box.left + (score - g.x[0]) / (g.x[1] - g.x[0]) * width) + "%";
          marker.style.top = 100 * box.top + "%";
          marker.style.height = 100 * height + "%";
        } else {
          var position = g.positions[record[g.field] === null ? "-" : String(record[g.field])];
          if (position === undefined) { marker.style.display = "none"; return; }
          marker.className = "mq-marker";
          marker.style.height = "";
          marker.style.left = 100 * (box.left + (position - g.x[0]) / (g.x[1] - g.x[0]) * width) + "%";
          marker.style.top = 100 * (box.top + (1 - (score - g.y[0]) / (g.y[1] - g.y[0])) * height) + "%";
        }
        marker.style.display = "block";
      });
  }

  window.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-table]"), function (root) {
      root.mqTable = new DataTable(root);
    });
    document.body.dataset.ready = "1";
  });
})();
