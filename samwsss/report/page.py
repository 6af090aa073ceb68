"""The report page: one self-contained HTML file (inline CSS, JS, SVG and JSON data).

The gallery data is an inline ``<script type="application/json">`` block; vanilla JS
sorts and filters it and renders one page of cards at a time, with ``loading="lazy"``
images, so tens of thousands of images stay fast.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

import yaml

CSS = """
body{font-family:system-ui,sans-serif;margin:0 1.5em 2em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em}td,th{padding:2px 8px;border:1px solid #ddd}
th{background:#eee;text-align:left}td.num{text-align:right}
pre{background:#fff;border:1px solid #ddd;padding:.6em;max-height:24em;overflow:auto}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ccc;border-radius:4px;padding:6px;font-size:.8em;
max-width:760px}
.card img{max-height:240px;margin-right:4px;vertical-align:top;background:#888}
.muted{color:#777}.bad{color:#b00}.controls{margin:.6em 0}.controls>*{margin-right:1em}
table.cm td{padding:0;width:18px;height:18px;border:1px solid #f4f4f4}
table.cm th{font-weight:normal;font-size:.75em;white-space:nowrap}
.legend span{display:inline-block;width:12px;height:12px;margin:0 3px 0 10px;
vertical-align:middle}
"""

SCRIPT = r"""
(function(){
"use strict";
const data=JSON.parse(document.getElementById("report-data").textContent);
const names=data.classes, items=data.items, hasGt=data.has_gt;
const state={sort:hasGt?"miou-asc":"id",cls:-1,page:0,size:48};
const sortSel=document.getElementById("sort"), clsSel=document.getElementById("class");
const sizeSel=document.getElementById("page-size");
const grid=document.getElementById("gallery"), info=document.getElementById("page-info");
function url(p){return p.split("/").map(encodeURIComponent).join("/");}
function el(tag,attrs,text){const e=document.createElement(tag);
 if(attrs){for(const k in attrs){e.setAttribute(k,attrs[k]);}}
 if(text!==undefined){e.textContent=text;}return e;}
function key(it){return it.miou===null||it.miou===undefined?2:it.miou;}
function view(){
 let list=items;
 if(state.cls>=0){list=list.filter(it=>(it.pred||[]).includes(state.cls)||
  (it.gt||[]).includes(state.cls));}
 list=list.slice();
 if(state.sort==="miou-asc"){list.sort((a,b)=>key(a)-key(b));}
 else if(state.sort==="miou-desc"){list.sort((a,b)=>(b.miou??-1)-(a.miou??-1));}
 else if(state.sort==="instances"){list.sort((a,b)=>b.dets.length-a.dets.length);}
 else{list.sort((a,b)=>a.id<b.id?-1:a.id>b.id?1:0);}
 return list;}
function card(it){
 const c=el("div",{"class":"card","data-id":it.id});
 const title=el("div");title.appendChild(el("b",null,it.id));
 if(it.miou!==undefined&&it.miou!==null){title.appendChild(
  el("span",{"class":"miou"}," mIoU "+(100*it.miou).toFixed(1)+"%"));}
 title.appendChild(el("span",{"class":"muted"}," "+it.w+"\u00d7"+it.h));
 c.appendChild(title);
 const pics=el("div");
 pics.appendChild(el("img",{src:url(it.t),loading:"lazy",alt:"prediction",title:"prediction"}));
 if(it.g){pics.appendChild(el("img",{src:url(it.g),loading:"lazy",alt:"ground truth",
  title:"ground truth"}));
  pics.appendChild(el("img",{src:url(it.e),loading:"lazy",alt:"errors",title:"errors"}));}
 c.appendChild(pics);
 if(it.dets.length){c.appendChild(el("div",null,"instances: "+it.dets.map(
  d=>(names[d[0]]||d[0])+" "+d[1].toFixed(2)).join(", ")));}
 if(it.tags&&Object.keys(it.tags).length){c.appendChild(el("div",{"class":"tags"},"tags: "+
  Object.entries(it.tags).map(t=>t[0]+" "+t[1].toFixed(2)).join(", ")));}
 if(it.src&&Object.keys(it.src).length){c.appendChild(el("div",{"class":"muted"},
  "tag sources: "+Object.entries(it.src).map(s=>s[0]+" \u2190 "+s[1].join("/")).join("; ")));}
 if(it.gt){c.appendChild(el("div",{"class":"muted"},"GT: "+it.gt.map(i=>names[i]).join(", ")+
  " | predicted: "+(it.pred||[]).map(i=>names[i]).join(", ")));}
 return c;}
function render(){
 const list=view(), pages=Math.max(1,Math.ceil(list.length/state.size));
 state.page=Math.min(state.page,pages-1);
 const start=state.page*state.size, frag=document.createDocumentFragment();
 for(const it of list.slice(start,start+state.size)){frag.appendChild(card(it));}
 grid.replaceChildren(frag);
 info.textContent="page "+(state.page+1)+" / "+pages+" ("+list.length+" images)";
 document.getElementById("prev").disabled=state.page===0;
 document.getElementById("next").disabled=state.page>=pages-1;}
names.forEach((n,i)=>{if(i>0){clsSel.appendChild(el("option",{value:String(i)},n));}});
if(!hasGt){for(const o of Array.from(sortSel.options)){if(o.value.startsWith("miou")){
 o.disabled=true;}}}
sortSel.value=state.sort;
sortSel.addEventListener("change",()=>{state.sort=sortSel.value;state.page=0;render();});
clsSel.addEventListener("change",()=>{state.cls=parseInt(clsSel.value,10);state.page=0;render();});
sizeSel.addEventListener("change",()=>{state.size=parseInt(sizeSel.value,10);state.page=0;render();});
document.getElementById("prev").addEventListener("click",()=>{state.page--;render();});
document.getElementById("next").addEventListener("click",()=>{state.page++;render();});
render();
})();
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(rows: Sequence[tuple[object, object]], table_id: str) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f'<table id="{table_id}">{body}</table>'


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f}"


def reproduction_html(results: dict[str, Any]) -> list[str]:
    """The section of ``samwsss reproduce``'s results: ours beside the published mIoU."""

    def number(value: float | None, signed: bool = False) -> str:
        return "-" if value is None else f"{value:+.1f}" if signed else f"{value:.1f}"

    rows = "".join(
        f"<tr><td>{_esc(line['name'])}</td><td>{_esc(line['column'])} ({_esc(line['split'])})</td>"
        f"<td class='num'>{number(line['ours'])}</td><td class='num'>{number(line['published'])}</td>"
        f"<td class='num'>{number(line['difference'], signed=True)}</td>"
        f"<td>{_esc(line['source'])}</td></tr>"
        for line in results.get("lines", [])
    )
    title = (
        f"<h2>Reproduction: {_esc(str(results.get('dataset', '')).upper())}, protocol "
        f"{_esc(results.get('protocol'))}, segmenter {_esc(results.get('segmenter'))}</h2>"
    )
    return [
        title,
        "<table id='reproduction'><tr><th>row</th><th>metric</th><th>ours mIoU %</th>"
        f"<th>published %</th><th>difference</th><th>published by</th></tr>{rows}</table>",
    ]


def bar_chart_svg(classes: Sequence[dict[str, Any]]) -> str:
    """Horizontal per-class IoU bars (classes with an IoU), as inline SVG."""
    shown = [c for c in classes if c.get("iou") is not None]
    row, label_w, bar_w = 16, 130, 360
    height = row * len(shown) + 24
    parts = [
        f'<svg id="iou-chart" width="{label_w + bar_w + 60}" height="{height}" '
        f'role="img" aria-label="per-class IoU">'
    ]
    for index, entry in enumerate(shown):
        y = index * row + 4
        width = bar_w * float(entry["iou"])
        parts.append(
            f'<text x="{label_w - 4}" y="{y + 11}" text-anchor="end" font-size="11">'
            f"{_esc(entry['name'])}</text>"
            f'<rect class="bar" x="{label_w}" y="{y}" width="{width:.1f}" height="{row - 4}" '
            f'fill="#4a7bd0"><title>{_esc(entry["name"])}: {_pct(entry["iou"])}%</title></rect>'
            f'<text x="{label_w + width + 4:.1f}" y="{y + 11}" font-size="10">'
            f"{_pct(entry['iou'])}</text>"
        )
    axis_y = row * len(shown) + 6
    for tick in range(0, 101, 25):
        x = label_w + bar_w * tick / 100
        parts.append(
            f'<line x1="{x}" y1="0" x2="{x}" y2="{axis_y}" stroke="#ccc" stroke-width="0.5"/>'
            f'<text x="{x}" y="{axis_y + 12}" font-size="9" text-anchor="middle">{tick}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def confusion_html(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    """Row-normalised confusion heat map (rows GT, columns prediction) as an HTML table."""
    head = "".join(f'<th title="{_esc(n)}">{_esc(n[:3])}</th>' for n in names)  # short column heads
    rows = []
    for gt_index, row in enumerate(matrix):
        total = sum(row)
        cells = []
        for pred_index, count in enumerate(row):
            share = count / total if total else 0.0
            shade = round(255 * (1.0 - share))
            title = f"GT {names[gt_index]} -> {names[pred_index]}: {share * 100:.1f}% ({count} px)"
            cells.append(
                f'<td style="background:rgb({shade},{shade},255)" title="{_esc(title)}"></td>'
            )
        rows.append(f"<tr><th>{_esc(names[gt_index])}</th>{''.join(cells)}</tr>")
    return (
        '<table class="cm" id="confusion"><tr><th>GT \\ pred</th>'
        f"{head}</tr>{''.join(rows)}</table>"
    )


def render_page(
    *,
    run_dir: str,
    config: dict[str, Any],
    manifest: dict[str, Any],
    failures: Sequence[dict[str, str]],
    class_names: Sequence[str],
    metrics: dict[str, Any] | None,
    items: Sequence[dict[str, Any]],
    reproduction: dict[str, Any] | None = None,
) -> str:
    """The whole ``index.html`` text; ``reproduction``: the ``results.json`` of the
    ``samwsss reproduce`` folder the run belongs to (a section of its own)."""
    counts = manifest.get("counts", {})
    timing = manifest.get("timing", {})
    models = manifest.get("environment", {}).get("models", {})
    sections = [
        f"<h1>samwsss run report</h1><p class='muted'>{_esc(run_dir)}</p>",
        "<h2>Counts and timing</h2>",
        _table([("images in gallery", len(items)), *counts.items(), *timing.items()], "counts"),
        "<h2>Models</h2>",
        _table([(role, json.dumps(source)) for role, source in models.items()], "models"),
        "<h2>Settings (config.yaml)</h2>",
        f"<pre id='settings'>{_esc(yaml.safe_dump(config, sort_keys=False) if config else '(none)')}</pre>",
        f"<h2>Failures ({len(failures)})</h2>",
    ]
    if failures:
        shown = failures[:200]
        sections.append(
            _table([(f["image_id"], f["reason"]) for f in shown], "failures")
            + (
                f"<p class='muted'>... {len(failures) - 200} more</p>"
                if len(failures) > 200
                else ""
            )
        )
    else:
        sections.append("<p class='muted'>none</p>")
    if metrics is not None:
        classes = metrics.get("classes", [])
        rows = "".join(
            f"<tr><td>{c['index']}</td><td>{_esc(c['name'])}</td>"
            f"<td class='num'>{_pct(c.get('iou'))}</td><td class='num'>{_pct(c.get('precision'))}</td>"
            f"<td class='num'>{_pct(c.get('recall'))}</td><td class='num'>{c.get('gt_pixels', '')}</td></tr>"
            for c in classes
        )
        sections += [
            f"<h2>Evaluation: mIoU {_pct(metrics.get('miou'))}%, pixel accuracy "
            f"{_pct(metrics.get('pixel_accuracy'))}%</h2>",
            "<table id='miou-table'><tr><th>#</th><th>class</th><th>IoU %</th>"
            f"<th>precision %</th><th>recall %</th><th>GT pixels</th></tr>{rows}</table>",
            "<h3>Per-class IoU</h3>",
            bar_chart_svg(classes),
            "<h3>Confusion matrix (rows: ground truth, columns: prediction; row-normalised)</h3>",
            confusion_html(metrics.get("confusion_matrix", []), [c["name"] for c in classes]),
        ]
    if reproduction is not None:
        sections += reproduction_html(reproduction)
    has_gt = any("g" in item for item in items)
    legend = (
        "<p class='legend'>error map:<span style='background:rgb(230,30,30)'></span>wrong class"
        "<span style='background:rgb(30,90,255)'></span>missed"
        "<span style='background:rgb(255,200,0)'></span>extra"
        "<span style='background:#000'></span>ignored"
        "<span style='background:rgb(190,190,190)'></span>correct object"
        "<span style='background:#fff;border:1px solid #ccc'></span>correct background</p>"
        if has_gt
        else ""
    )
    sections += [
        "<h2>Gallery</h2>",
        legend,
        "<div class='controls'><label>sort <select id='sort'>"
        "<option value='miou-asc'>mIoU, worst first</option>"
        "<option value='miou-desc'>mIoU, best first</option>"
        "<option value='id'>image id</option>"
        "<option value='instances'>most instances</option></select></label>"
        "<label>class <select id='class'><option value='-1'>all</option></select></label>"
        "<label>per page <select id='page-size'><option>24</option>"
        "<option selected>48</option><option>96</option><option>200</option></select></label>"
        "<button id='prev'>previous</button><span id='page-info'></span>"
        "<button id='next'>next</button></div>",
        "<div class='grid' id='gallery'></div>",
    ]
    data = {"classes": list(class_names), "items": list(items), "has_gt": has_gt}
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>samwsss report</title><style>{CSS}</style></head><body>"
        + "".join(sections)
        + f'<script type="application/json" id="report-data">{payload}</script>'
        + f"<script>{SCRIPT}</script></body></html>"
    )
