// 发布预警: the area tree (search, select-all per township). The form works without it:
// a ticked "全镇" box is the whole township on the server too.
"use strict";

function setupTree() {
  const tree = document.querySelector("[data-tree]");
  if (!tree) return;
  tree.addEventListener("change", (ev) => {
    const box = ev.target;
    const town = box.closest("[data-township]");
    if (!town) return;
    const all = town.querySelector("[data-all]");
    const villages = town.querySelectorAll("[data-village]");
    if (box.matches("[data-all]")) {
      villages.forEach((v) => { v.checked = box.checked; });
      if (box.checked) town.open = true;
    } else if (box.matches("[data-village]")) {
      all.checked = Array.from(villages).every((v) => v.checked);
    }
  });
  const search = document.querySelector("[data-tree-search]");
  if (!search) return;
  search.addEventListener("input", () => {
    const q = search.value.trim();
    tree.querySelectorAll("[data-township]").forEach((town) => {
      let any = false;
      town.querySelectorAll("li[data-name]").forEach((li) => {
        const hit = !q || li.dataset.name.includes(q);
        li.classList.toggle("hidden", !hit);
        any = any || hit;
      });
      town.classList.toggle("hidden", !any && !town.querySelector("summary").textContent.includes(q));
      if (q && any) town.open = true;
    });
  });
}

document.addEventListener("DOMContentLoaded", setupTree);
