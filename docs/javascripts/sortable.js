// Sort every table.sortable by the column whose header is clicked (again: reverse order).
// Cells sort by their leading number ("0.4496 ± 0.0067", "2,881,151"), else as text;
// empty cells ("–") go last either way. Plain DOM, no library: the site works offline.
(function () {
  function key(cell) {
    var text = cell.textContent.trim();
    var match = text.replace(/,/g, "").match(/^[-−+]?\d*\.?\d+(e[-+]?\d+)?/i);
    if (match) return { number: parseFloat(match[0].replace("−", "-")) };
    if (text === "" || text === "–") return { missing: true };
    return { text: text.toLowerCase() };
  }
  function compare(a, b) {
    if (a.missing || b.missing) return a.missing && b.missing ? 0 : a.missing ? 1 : -1;
    if (a.number !== undefined && b.number !== undefined) return a.number - b.number;
    return String(a.text !== undefined ? a.text : a.number).localeCompare(String(b.text !== undefined ? b.text : b.number));
  }
  function sort(table, column, header) {
    var body = table.tBodies[0];
    var descending = header.getAttribute("aria-sort") !== "descending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = key(r1.cells[column]), b = key(r2.cells[column]);
      if (a.missing || b.missing) return compare(a, b);
      return descending ? compare(b, a) : compare(a, b);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  function setup() {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
        header.tabIndex = 0;
        header.title = "sort by " + header.textContent;
        header.addEventListener("click", function () { sort(table, column, header); });
        header.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sort(table, column, header); }
        });
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup);
  else setup();
})();
