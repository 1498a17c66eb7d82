"""Docs routes (public, no token): the OpenAPI document and a self-contained page of it."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pixelbatch.api.http import JSON, create_app
from pixelbatch.api.openapi import build_document
from pixelbatch.observability import logger, metrics, tracer

HTML = "text/html; charset=utf-8"
DEFAULT_STAGE = "$default"

app = create_app()


@app.get("/api/openapi.json")
def openapi_json() -> Response:
    body = document_json(server_url(app.current_event.request_context.stage))
    return Response(200, JSON, body, headers={"X-Content-Type-Options": "nosniff"})


@app.get("/api/docs")
def docs_page() -> Response:
    return Response(200, HTML, PAGE, headers=PAGE_HEADERS)


def server_url(stage: str | None) -> str:
    """Behind a named stage every path starts with /<stage>; the server URL stays relative."""
    return "/" if not stage or stage == DEFAULT_STAGE else f"/{stage}"


@lru_cache(maxsize=4)
def document_json(server: str) -> str:
    return json.dumps(build_document(server), ensure_ascii=False, separators=(",", ":"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


# ---------------------------------------------------------------------- the page

STYLE = """
:root { --fg: #1d2330; --muted: #5d6678; --line: #dde2ea; --bg: #f6f8fb; --card: #fff;
  --get: #1f6feb; --post: #1a7f37; --err: #b42318; --code: #eef1f6; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { padding: 24px 32px 12px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 24px; }
main { padding: 16px 32px 48px; max-width: 1200px; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: var(--code); padding: 1px 4px; border-radius: 4px; }
pre { background: #0f1722; color: #e6edf3; padding: 12px; border-radius: 6px; overflow: auto;
  margin: 6px 0 12px; }
.muted { color: var(--muted); }
.example { font-size: 13px; font-weight: 600; color: var(--muted); margin-top: 8px; }
.error { color: var(--err); font-weight: 600; }
.tools { display: flex; gap: 12px; align-items: center; margin-top: 12px; flex-wrap: wrap; }
.tools input { padding: 6px 10px; border: 1px solid var(--line); border-radius: 6px; width: 320px;
  font: inherit; }
h2.tag { margin: 28px 0 8px; font-size: 18px; text-transform: capitalize; }
details.op { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  margin: 8px 0; }
details.op > summary { cursor: pointer; padding: 10px 14px; display: flex; gap: 12px;
  align-items: center; list-style: none; }
details.op > summary::-webkit-details-marker { display: none; }
details.op[open] > summary { border-bottom: 1px solid var(--line); }
.body { padding: 4px 16px 12px; }
.method { font-weight: 700; font-size: 12px; color: #fff; padding: 3px 8px; border-radius: 4px;
  min-width: 52px; text-align: center; text-transform: uppercase; background: var(--muted); }
.method.get { background: var(--get); }
.method.post { background: var(--post); }
.path { font-weight: 600; }
.summary { color: var(--muted); flex: 1; }
.badge { font-size: 12px; border: 1px solid var(--line); border-radius: 10px; padding: 0 8px;
  color: var(--muted); white-space: nowrap; }
.badge.auth { border-color: #d4a72c; color: #7d5b00; }
h3 { font-size: 14px; margin: 16px 0 6px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--muted); }
h4 { margin: 12px 0 4px; font-size: 14px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
th, td { text-align: left; vertical-align: top; border-top: 1px solid var(--line);
  padding: 5px 8px; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.name { white-space: nowrap; font-family: ui-monospace, Menlo, Consolas, monospace; }
.req { color: var(--err); margin-left: 2px; }
.type { color: #6f42c1; font-family: ui-monospace, Menlo, Consolas, monospace; }
.rule { display: inline-block; font-size: 12px; background: var(--code); border-radius: 4px;
  padding: 0 6px; margin: 1px 4px 1px 0; }
.nested { margin-left: 14px; padding-left: 10px; border-left: 2px solid var(--line); }
.status { font-weight: 700; margin-right: 6px; }
.status.s2, .status.s3 { color: var(--post); }
.status.s4, .status.s5 { color: var(--err); }
.hidden { display: none; }
"""

SCRIPT = r"""
(() => {
  "use strict";
  const MAX_DEPTH = 8;
  let spec = null;

  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const add = (parent, ...children) => {
    children.forEach((child) => { if (child) parent.appendChild(child); });
    return parent;
  };
  // `code` spans in descriptions, everything else as plain text
  const prose = (tag, text, cls) => {
    const node = el(tag, cls);
    String(text || "").split("`").forEach((part, i) => {
      add(node, i % 2 ? el("code", null, part) : document.createTextNode(part));
    });
    return node;
  };
  const pointer = (ref) => ref.replace(/^#\//, "").split("/")
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"));
  const resolve = (node) => {
    let seen = 0;
    while (node && typeof node.$ref === "string" && seen++ < 20) {
      node = pointer(node.$ref).reduce((at, key) => (at ? at[key] : undefined), spec);
    }
    return node || {};
  };
  const refName = (node) => (node && node.$ref ? node.$ref.split("/").pop() : null);
  const json = (value) => JSON.stringify(value, null, 2);

  const typeOf = (schema) => {
    const named = refName(schema);
    const s = resolve(schema);
    if (named) return named;
    if (s.const !== undefined) return "const " + JSON.stringify(s.const);
    if (s.anyOf || s.oneOf) return (s.anyOf || s.oneOf).map(typeOf).join(" | ");
    const types = [].concat(s.type || (s.properties ? "object" : "any"));
    return types.map((t) => (t === "array" && s.items ? typeOf(s.items) + "[]" : t)).join(" | ");
  };

  const rules = (s, withKeys) => {
    const out = [];
    const put = (label, value) => { if (value !== undefined) out.push(label + value); };
    put("format: ", s.format);
    put("min length ", s.minLength);
    put("max length ", s.maxLength);
    put("pattern ", s.pattern);
    put("≥ ", s.minimum);
    put("≤ ", s.maximum);
    put("min items ", s.minItems);
    put("max items ", s.maxItems);
    if (s.enum) out.push("one of " + s.enum.map((v) => JSON.stringify(v)).join(", "));
    if (s.default !== undefined) out.push("default " + JSON.stringify(s.default));
    if (withKeys && s.additionalProperties === true) out.push("other keys allowed");
    if (withKeys && s.additionalProperties === false) out.push("no other keys");
    const refused = withKeys && s.propertyNames && s.propertyNames.not;
    if (refused && refused.enum) out.push("refused keys: " + refused.enum.join(", "));
    if (s.examples) out.push("e.g. " + s.examples.map((v) => JSON.stringify(v)).join(", "));
    return out;
  };

  const ruleList = (s, withKeys = true) => {
    const box = el("div");
    rules(s, withKeys).forEach((r) => add(box, el("span", "rule", r)));
    return box.childNodes.length ? box : null;
  };

  // `head`: show the schema's name, description and rules (a property row already shows them)
  const renderSchema = (schema, depth, head = true) => {
    const s = resolve(schema);
    if (!head && s.items && !s.properties) return renderSchema(s.items, depth);
    const box = el("div", depth ? "nested" : null);
    if (depth > MAX_DEPTH) return add(box, el("span", "muted", "…"));
    if (head && !depth && refName(schema)) add(box, el("div", "type", refName(schema)));
    if (head && s.description) add(box, prose("div", s.description, "muted"));
    const variants = s.anyOf || s.oneOf;
    if (variants) {
      add(box, el("div", "muted", s.anyOf ? "Any of:" : "One of:"));
      variants.forEach((v) => {
        add(box, el("div", "type", typeOf(v)), renderSchema(v, depth + 1));
      });
      return box;
    }
    if (s.properties) {
      const table = add(el("table"), add(el("tr"), el("th", null, "field"),
        el("th", null, "type"), el("th", null, "rules and notes")));
      const required = new Set(s.required || []);
      Object.entries(s.properties).forEach(([name, prop]) => {
        const p = resolve(prop);
        const nameCell = el("td", "name", name);
        if (required.has(name)) add(nameCell, el("span", "req", "*"));
        const notes = el("td");
        if (p.description) add(notes, prose("div", p.description));
        const structured = hasStructure(p);
        add(notes, ruleList(p, !structured));
        if (structured) add(notes, renderSchema(prop, depth + 1, false));
        add(table, add(el("tr"), nameCell, el("td", "type", typeOf(prop)), notes));
      });
      add(box, table, ruleList({ additionalProperties: s.additionalProperties,
        propertyNames: s.propertyNames }));
      return box;
    }
    add(box, el("div", "type", typeOf(schema)), ruleList(s));
    if (s.items && hasStructure(resolve(s.items))) add(box, renderSchema(s.items, depth + 1));
    return box;
  };
  const hasStructure = (s) => Boolean(s.properties || s.anyOf || s.oneOf
    || (s.items && hasStructure(resolve(s.items))));

  const renderExamples = (media) => {
    const box = el("div");
    if (media.example !== undefined) add(box, el("pre", null, json(media.example)));
    Object.entries(media.examples || {}).forEach(([name, ex]) => {
      const e = resolve(ex);
      add(box, el("div", "example", "Example: " + (e.summary || name)),
        el("pre", null, json(e.value)));
    });
    return box;
  };

  const renderContent = (content) => {
    const box = el("div");
    Object.entries(content || {}).forEach(([type, media]) => {
      add(box, add(el("div"), el("span", "muted", "Content-Type: "), el("code", null, type)));
      if (media.schema) add(box, renderSchema(media.schema, 0));
      add(box, renderExamples(media));
    });
    return box;
  };

  const renderParameters = (params) => {
    if (!params.length) return null;
    const table = add(el("table"), add(el("tr"), el("th", null, "name"), el("th", null, "in"),
      el("th", null, "type"), el("th", null, "rules and notes")));
    params.map(resolve).forEach((p) => {
      const name = el("td", "name", p.name);
      if (p.required) add(name, el("span", "req", "*"));
      const notes = add(el("td"), p.description ? prose("div", p.description) : null,
        ruleList(resolve(p.schema || {})));
      if (p.example !== undefined) add(notes, el("span", "rule", "e.g. " + p.example));
      add(table, add(el("tr"), name, el("td", null, p.in), el("td", "type", typeOf(p.schema || {})),
        notes));
    });
    return add(el("div"), el("h3", null, "Parameters"), table);
  };

  const renderHeaders = (headers) => {
    const entries = Object.entries(headers || {});
    if (!entries.length) return null;
    const table = add(el("table"), add(el("tr"), el("th", null, "header"),
      el("th", null, "type"), el("th", null, "notes")));
    entries.forEach(([name, header]) => {
      const h = resolve(header);
      add(table, add(el("tr"), el("td", "name", name), el("td", "type", typeOf(h.schema || {})),
        add(el("td"), h.description ? prose("div", h.description) : null,
          ruleList(resolve(h.schema || {})))));
    });
    return table;
  };

  const renderResponses = (responses) => {
    const box = add(el("div"), el("h3", null, "Responses"));
    Object.entries(responses || {}).forEach(([status, response]) => {
      const r = resolve(response);
      const title = add(el("h4"), el("span", "status s" + status[0], status));
      add(title, prose("span", r.description));
      add(box, title, renderHeaders(r.headers), renderContent(r.content));
    });
    return box;
  };

  const isPublic = (op) => {
    const security = op.security !== undefined ? op.security : spec.security;
    return !security || security.length === 0;
  };

  const renderOperation = (method, path, op, pathItem) => {
    const details = el("details", "op");
    details.dataset.search = [method, path, op.summary, op.operationId].join(" ").toLowerCase();
    const pub = isPublic(op);
    add(details, add(el("summary"), el("span", "method " + method, method),
      el("code", "path", path), el("span", "summary", op.summary || ""),
      el("span", pub ? "badge" : "badge auth", pub ? "public" : "Bearer JWT")));
    const body = add(el("div", "body"), op.description ? prose("p", op.description) : null);
    add(body, renderParameters([].concat(pathItem.parameters || [], op.parameters || [])));
    if (op.requestBody) {
      const rb = resolve(op.requestBody);
      add(body, el("h3", null, "Request body" + (rb.required ? " (required)" : "")));
      add(body, renderContent(rb.content));
    }
    add(body, renderResponses(op.responses));
    return add(details, body);
  };

  const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];

  const render = (doc) => {
    spec = doc;
    const info = doc.info || {};
    document.title = info.title || document.title;
    document.getElementById("title").textContent = info.title || "API";
    document.getElementById("version").textContent =
      "OpenAPI " + doc.openapi + " · version " + (info.version || "?");
    const description = document.getElementById("description");
    String(info.description || "").split("\n\n")
      .forEach((para) => add(description, prose("p", para)));
    const main = document.getElementById("ops");
    main.textContent = "";
    const byTag = new Map();
    Object.entries(doc.paths || {}).forEach(([path, item]) => {
      METHODS.filter((m) => item[m]).forEach((m) => {
        const tag = (item[m].tags || ["other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(renderOperation(m, path, item[m], item));
      });
    });
    byTag.forEach((ops, tag) => {
      const section = add(el("section"), el("h2", "tag", tag), ...ops);
      add(main, section);
    });
  };

  const applyFilter = (query) => {
    const q = query.trim().toLowerCase();
    document.querySelectorAll("details.op").forEach((op) => {
      op.classList.toggle("hidden", Boolean(q) && !op.dataset.search.includes(q));
    });
    document.querySelectorAll("section").forEach((section) => {
      const shown = section.querySelectorAll("details.op:not(.hidden)").length;
      section.classList.toggle("hidden", shown === 0);
    });
  };

  const setAll = (open) => document.querySelectorAll("details.op")
    .forEach((d) => { d.open = open; });

  document.getElementById("filter").addEventListener("input", (e) => applyFilter(e.target.value));
  document.getElementById("expand").addEventListener("click", () => setAll(true));
  document.getElementById("collapse").addEventListener("click", () => setAll(false));

  fetch("./openapi.json", { headers: { Accept: "application/json" } })
    .then((r) => {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    })
    .then(render)
    .catch((error) => {
      const main = document.getElementById("ops");
      main.textContent = "";
      add(main, el("p", "error", "Could not load ./openapi.json: " + error.message));
    });
})();
"""

_PAGE_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PixelBatch API</title>
<style>{style}</style>
</head>
<body>
<header>
<h1 id="title">PixelBatch API</h1>
<div id="version" class="muted"></div>
<div id="description"></div>
<div class="tools">
<input id="filter" type="search" placeholder="Filter routes (path, method, summary)">
<button id="expand" type="button">Expand all</button>
<button id="collapse" type="button">Collapse all</button>
<a href="./openapi.json">openapi.json</a>
</div>
</header>
<main id="ops"><p class="muted">Loading ./openapi.json …</p></main>
<script>{script}</script>
</body>
</html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = _PAGE_TEMPLATE.replace("{style}", STYLE).replace("{script}", SCRIPT)
PAGE_HEADERS = {
    # Only the page's own inline code runs, and it may only fetch from this origin.
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
